"""The owner's read check: after writing, a child that drops to FileOwner reads the file back."""

import os
import sys
import time
from typing import Tuple

from .base import IS_WINDOWS, AgentError, env_float
from .files import read_all
from .paths import resolve_groups, split_logical

READ_CHECK_ERRORS = {
    2: "permission denied",
    3: "it reads other content than was written",
    4: "it cannot be opened or read",
    5: "the agent is not root and cannot act as that user",
}


def check_owner_reads(logical: str, user: str, owner: Tuple[int, int], expected: bytes) -> None:
    """Read the file as the application would: in a child that becomes ``user`` (uid, gid and groups).

    The proof of the key runs as root, who reads anything; this makes "the application cannot read its
    file" (a mode, group, ACL or parent directory that shuts the user out) a failure, never a confirmation.
    The path is opened from the server's root directory, so every directory on the way must let the user
    through, as it must for the application. (SELinux is not checked: the child keeps root's domain.)
    """
    if IS_WINDOWS:  # pragma: no cover - no owner on Windows (docs/agent.md)
        return
    uid, gid = owner
    groups = resolve_groups(user, gid)
    root_fd = os.open(os.environ.get("KEYROTATION_ROOT", "") or "/", os.O_RDONLY | os.O_DIRECTORY)
    relative = "/".join(split_logical(logical))
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        pid = os.fork()
        if pid == 0:  # the child: no output, no cleanup handlers, only an exit code
            code = 4
            try:
                if os.geteuid() == 0:
                    os.setgroups(groups)
                    os.setgid(gid)
                    os.setuid(uid)
                elif os.geteuid() != uid:
                    code = 5
                    raise OSError("not root")
                fd = os.open(relative, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY, dir_fd=root_fd)
                code = 0 if read_all(fd) == expected else 3
            except PermissionError:
                code = 2
            except BaseException:  # noqa: BLE001, S110 - the code says what failed
                pass
            finally:
                os._exit(code)
    finally:
        os.close(root_fd)
    deadline = time.monotonic() + env_float("KEYROTATION_READ_CHECK_TIMEOUT", 10.0)
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            import signal

            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AgentError("unreadable_by_owner", "reading %s as %s timed out" % (logical, user))
        time.sleep(0.01)
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 4
    if code != 0:
        raise AgentError(
            "unreadable_by_owner",
            "%s cannot read %s (uid %d, gid %d, groups %s): %s"
            % (
                user,
                logical,
                uid,
                gid,
                ",".join(str(g) for g in groups),
                READ_CHECK_ERRORS.get(code, "failed"),
            ),
        )

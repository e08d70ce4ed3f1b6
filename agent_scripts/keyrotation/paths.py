"""Paths on the server: logical paths under KEYROTATION_ROOT, the SSM Agent's own credentials file
(refused), local users and groups."""

import ntpath
import os
import re
from typing import List, Tuple

try:  # POSIX only
    import pwd
except ImportError:  # pragma: no cover - Windows
    pwd = None  # type: ignore[assignment]

from .base import IS_WINDOWS, AgentError

# The SSM Agent keeps its own credentials here (profile "default") and rewrites them periodically.
SSM_AGENT_FILES = (
    (r"C:\Windows\System32\config\systemprofile\.aws\credentials",)
    if IS_WINDOWS
    else ("/root/.aws/credentials",)
)


def host_path(logical: str) -> str:
    """Where a logical path lives on this machine: under KEYROTATION_ROOT when it is set (tests, sandbox)."""
    root = os.environ.get("KEYROTATION_ROOT", "")
    if not root:
        return logical
    relative = re.sub(r"^[A-Za-z]:", "", logical).lstrip("/\\")
    return os.path.join(root, *re.split(r"[/\\]", relative))


def same_path(a: str, b: str) -> bool:
    if IS_WINDOWS:  # case-insensitive, either separator
        return ntpath.normcase(ntpath.normpath(a)) == ntpath.normcase(ntpath.normpath(b))
    if os.path.normpath(a) == os.path.normpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def refuse_ssm_agent_file(logical: str) -> None:
    """The SSM Agent's own credentials file is never written, whatever the profile.

    The SSM Agent rewrites that file (its profile default) whenever it refreshes the node's credentials, with
    no lock shared with us: writing any other profile there races with it, and either write can lose the
    other's.
    """
    target = host_path(logical)
    agent_files = [host_path(p) for p in SSM_AGENT_FILES]
    # Run Command points AWS_SHARED_CREDENTIALS_FILE at the agent's own file.
    if os.environ.get("AWS_SHARED_CREDENTIALS_FILE"):
        agent_files.append(os.environ["AWS_SHARED_CREDENTIALS_FILE"])
    named = any(same_path(logical, p) for p in SSM_AGENT_FILES)
    if named or any(same_path(target, p) for p in agent_files):
        raise AgentError(
            "refused_agent_file",
            "refusing to write the SSM Agent's own credentials file (any profile, not only default): the SSM "
            "Agent rewrites it without a lock shared with us; use the application user's file",
        )


def resolve_owner(name: str) -> Tuple[int, int]:
    """(uid, gid) of a local user. Under KEYROTATION_ROOT, the simulated server's <root>/etc/passwd wins."""
    if IS_WINDOWS:
        return (-1, -1)
    passwd = host_path("/etc/passwd")
    if os.environ.get("KEYROTATION_ROOT") and os.path.isfile(passwd):
        with open(passwd, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                fields = line.rstrip("\n").split(":")
                if len(fields) >= 4 and fields[0] == name and fields[2].isdigit() and fields[3].isdigit():
                    return int(fields[2]), int(fields[3])
        raise AgentError("unknown_owner", "no local user named %s" % name)
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise AgentError("unknown_owner", "no local user named %s" % name) from None
    return entry.pw_uid, entry.pw_gid


def resolve_groups(name: str, gid: int) -> List[int]:
    """The user's groups (primary and supplementary), as the application running as that user has them."""
    if os.environ.get("KEYROTATION_ROOT") and os.path.isfile(host_path("/etc/passwd")):
        found = {gid}
        group_file = host_path("/etc/group")
        if os.path.isfile(group_file):
            with open(group_file, encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    fields = line.rstrip("\n").split(":")
                    if len(fields) >= 4 and fields[2].isdigit() and name in fields[3].split(","):
                        found.add(int(fields[2]))
        return sorted(found)
    try:
        return sorted(set(os.getgrouplist(name, gid)))
    except (KeyError, OSError):
        return [gid]


def split_logical(logical: str) -> List[str]:
    relative = re.sub(r"^[A-Za-z]:", "", logical).lstrip("/\\")
    return [part for part in re.split(r"[/\\]", relative) if part]

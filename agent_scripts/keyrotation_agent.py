#!/usr/bin/env python3
# (PTH: the agent works with file descriptors and dir_fd on purpose; S105: key names, not passwords.)
"""Key rotation agent: writes the current access key of a secret into one profile of a credentials file.

Runs on the server (as root, from the Run Command document ``rotate-access-key``, or by hand for debugging).
Python 3.6+ (RHEL 8's /usr/libexec/platform-python is 3.6) and the standard library only; AWS calls go through
botocore when it is importable, else through the AWS CLI (v1 or v2). See docs/agent.md for what it may touch,
its exit codes and its result line.

Python 3.6 is why this file has no ``from __future__ import annotations`` (3.7+), no dataclasses, walrus,
positional-only parameters or ``subprocess.run(capture_output=..., text=...)``: annotations are evaluated at
definition time, so a name used in one must already be defined (or be a string); local variables are typed
with ``# type:`` comments. ruff checks this file against Python 3.7 syntax; tests/agent/test_agent_pythons.py
runs it on every CPython from 3.6 to 3.13.

Action ``rotate``:
  1. validate every input (the document's patterns, again) and refuse unsafe targets;
  2. fetch the secret's AWSCURRENT value with the server's own credentials and check its shape;
  3. rewrite only the profile's two key lines (atomically, keeping the file's owner, group, mode and extended
     attributes such as ACLs and the SELinux label, or refusing before any change; a new file is 0600 and
     FileOwner's; a root-only 0600 backup);
  4. read the file as FileOwner (a child that drops to that user), then prove the new key works from this
     server (sts:GetCallerIdentity with that profile); if either fails, restore;
  5. run the named reload hook from the root-owned hooks directory;
  6. print exactly one ``KEYROTATION_RESULT {json}`` line; exit non-zero on any failure.
Action ``verify`` checks, writing nothing, that the profile holds ExpectedAccessKeyId and that it works.

Test affordances (docs/design.md section 6 and docs/agent.md): ``KEYROTATION_ROOT`` prefixes every path the
agent touches; ``AWS_ENDPOINT_URL`` is honoured by botocore and the CLI; the ``KEYROTATION_*`` tunables below.
Nothing here pauses for tests: the tests that kill the agent mid-write slow its os calls from outside.
"""

import argparse
import configparser
import contextlib
import errno
import io
import json
import ntpath
import os
import re
import stat
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

try:  # POSIX only
    import fcntl
    import pwd
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]
    pwd = None  # type: ignore[assignment]

# The document's parameters, the result line and the exit codes: shipped beside this file (docs/design.md §4).
from keyrotation_contract import (  # noqa: E402 - after the platform imports
    EXIT_CODES,
    PARAMETERS,
    PATTERNS,
    RESULT_LINE_LIMIT,
    format_result,
)

# The result line is the agent's only stdout (keyrotation_contract: marker, fields, RESULT_LINE_LIMIT).
SHORTENABLE = ("message", "file", "backup", "caller_arn", "hook")
# How much of a reload hook's output (stdout and stderr, merged) the agent relays to its own stderr.
HOOK_OUTPUT_SHOWN = 1000

SECRET_KEY_PATTERN = r"^[A-Za-z0-9/+=]{16,256}$"

IS_WINDOWS = os.name == "nt"
HOOKS_DIR = r"C:\ProgramData\keyrotation\hooks.d" if IS_WINDOWS else "/etc/keyrotation/hooks.d"
# The SSM Agent keeps its own credentials here (profile "default") and rewrites them periodically.
SSM_AGENT_FILES = (
    (r"C:\Windows\System32\config\systemprofile\.aws\credentials",)
    if IS_WINDOWS
    else ("/root/.aws/credentials",)
)

KEY_ID = "aws_access_key_id"
SECRET_KEY = "aws_secret_access_key"
SESSION_TOKEN = "aws_session_token"
BACKUP_SUFFIX = ".keyrotation-backup"
TEMP_INFIX = ".keyrotation-tmp-"

class AgentError(Exception):
    """A failure with a result code (see EXIT_CODES); the message never contains a secret."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def log(message: str) -> None:
    """Diagnostics go to stderr: stdout carries only the result line."""
    sys.stderr.write("keyrotation: " + message + "\n")
    sys.stderr.flush()


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise AgentError("invalid_parameter", "%s must be a number" % name) from None


# --------------------------------------------------------------------------------------------- parameters


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # noqa: D102 - argparse hook
        raise AgentError("invalid_parameter", "bad command line: " + message)


def read_parameters(argv: List[str]) -> Dict[str, str]:
    parser = _Parser(
        prog="keyrotation_agent.py",
        description="Rotate (or verify) the access key of one profile in a credentials file. Every flag "
        "defaults to the matching SSM_<Name> environment variable, as set by Run Command.",
    )
    for parameter in PARAMETERS:
        parser.add_argument(
            parameter.flag, dest=parameter.name, default=None, help="default: $SSM_" + parameter.name
        )
    args = parser.parse_args(argv)
    values = {}
    for parameter in PARAMETERS:
        default = parameter.default or ""
        value = getattr(args, parameter.name)
        if value is None:
            value = os.environ.get("SSM_" + parameter.name)
        if value is None or (value == "" and default):
            value = default
        values[parameter.name] = value
    return values


def validate_parameters(params: Dict[str, str]) -> None:
    for name, pattern in PATTERNS.items():
        if not re.fullmatch(pattern, params[name]):
            raise AgentError("invalid_parameter", "%s does not match %s" % (name, pattern))
    path = params["CredentialsFile"]
    components = re.split(r"[/\\]", path)[1:]
    if any(part in ("", ".", "..") for part in components):
        raise AgentError("invalid_parameter", "CredentialsFile must be an absolute path without '.' or '..'")
    if not IS_WINDOWS and (not path.startswith("/") or "\\" in path):
        raise AgentError("invalid_parameter", "CredentialsFile must be an absolute POSIX path")
    if params["Profile"] == configparser.DEFAULTSECT:
        raise AgentError(
            "invalid_parameter", "Profile DEFAULT is configparser's defaults section, not a profile"
        )
    if params["Action"] == "verify" and not params["ExpectedAccessKeyId"]:
        raise AgentError("invalid_parameter", "Action verify needs ExpectedAccessKeyId")
    if IS_WINDOWS and params["ReloadHook"]:
        raise AgentError("invalid_parameter", "reload hooks are not supported on Windows yet")


# ------------------------------------------------------------------------------------------------- paths


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


# --------------------------------------------------------------------------------------- the directory


def read_all(fd: int) -> bytes:
    """Everything left to read from ``fd``."""
    chunks = []  # type: List[bytes]
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


class Directory:
    """The credentials file's directory, opened component by component without following symlinks (POSIX).

    Every operation is relative to the directory's file descriptor, so nobody who can rename things in the
    path (e.g. the file's owner in their home) can redirect root's writes elsewhere after the checks.
    """

    def __init__(self, logical_dir: str, owner: Tuple[int, int], create: bool) -> None:
        self.logical = logical_dir
        self.owner = owner
        self.fd = -1
        self.path = host_path(logical_dir)
        if IS_WINDOWS:  # pragma: no cover - no owner or fd-relative checks on Windows
            if not os.path.isdir(self.path):
                if not create or not os.path.isdir(os.path.dirname(self.path)):
                    raise AgentError("unsafe_path", "directory %s does not exist" % logical_dir)
                os.mkdir(self.path)
            return
        self._open(create)

    def _open(self, create: bool) -> None:
        uid, gid = self.owner
        allowed = {0, uid}
        root = os.environ.get("KEYROTATION_ROOT", "") or "/"
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        parts = split_logical(self.logical)
        shown = ""
        try:
            for index, name in enumerate(parts):
                shown += "/" + name
                last = index == len(parts) - 1
                try:
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                except FileNotFoundError:
                    if not (last and create):
                        raise AgentError("unsafe_path", "directory %s does not exist" % shown) from None
                    os.mkdir(name, 0o700, dir_fd=fd)
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    log("created directory %s" % shown)
                    created = True
                else:
                    created = False
                if stat.S_ISLNK(st.st_mode):
                    raise AgentError("unsafe_path", "%s is a symlink; give the real path" % shown)
                if not stat.S_ISDIR(st.st_mode):
                    raise AgentError("unsafe_path", "%s is not a directory" % shown)
                child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                os.close(fd)
                fd = child
                if created:
                    os.fchown(fd, uid, gid)
                    os.fchmod(fd, 0o700)
                st = os.fstat(fd)
                if st.st_uid not in allowed:
                    raise AgentError(
                        "unsafe_path", "%s is owned by uid %d, not root or the owner" % (shown, st.st_uid)
                    )
                if st.st_mode & stat.S_IWOTH or (st.st_mode & stat.S_IWGRP and st.st_gid not in (0, gid)):
                    raise AgentError("unsafe_path", "%s is writable by other users" % shown)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    # -- locking

    def lock(self, timeout: float) -> None:
        """Serialize runs on this directory (two profiles of one file must not interleave)."""
        if IS_WINDOWS:  # pragma: no cover
            self._lock_windows(timeout)
            return
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise AgentError(
                        "locked", "another rotation holds the lock on %s" % self.logical
                    ) from None
                time.sleep(0.05)

    def _lock_windows(self, timeout: float) -> None:  # pragma: no cover
        import msvcrt

        handle = open(os.path.join(self.path, ".keyrotation.lock"), "a+b")  # noqa: SIM115 - held until exit
        deadline = time.monotonic() + timeout
        while True:
            try:
                msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
                self._lock_handle = handle
                return
            except OSError:
                if time.monotonic() >= deadline:
                    raise AgentError(
                        "locked", "another rotation holds the lock on %s" % self.logical
                    ) from None
                time.sleep(0.05)

    # -- files

    def stat_file(self, name: str) -> Optional[os.stat_result]:
        try:
            if IS_WINDOWS:  # pragma: no cover
                return os.lstat(os.path.join(self.path, name))
            return os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def read_file(self, name: str) -> Optional[Tuple[bytes, "FileAttributes"]]:
        """The file's bytes and attributes, or None if missing.

        Refuses symlinks, hard links, non-files and foreign owners."""
        st = self.stat_file(name)
        if st is None:
            return None
        shown = self.logical.rstrip("/\\") + "/" + name
        if stat.S_ISLNK(st.st_mode):
            raise AgentError("unsafe_path", "%s is a symlink; give the real path" % shown)
        if not stat.S_ISREG(st.st_mode):
            raise AgentError("unsafe_path", "%s is not a regular file" % shown)
        if IS_WINDOWS:  # pragma: no cover
            with open(os.path.join(self.path, name), "rb") as handle:
                return handle.read(), FileAttributes(-1, -1, 0o600, None)
        if st.st_nlink != 1:
            raise AgentError("unsafe_path", "%s has %d hard links" % (shown, st.st_nlink))
        if st.st_uid not in (0, self.owner[0]):
            raise AgentError(
                "unsafe_path", "%s is owned by uid %d, not root or the owner" % (shown, st.st_uid)
            )
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=self.fd)
        try:
            opened = os.fstat(fd)
            if (opened.st_ino, opened.st_dev) != (st.st_ino, st.st_dev) or not stat.S_ISREG(opened.st_mode):
                raise AgentError("unsafe_path", "%s changed while it was being read" % shown)
            attributes = FileAttributes(
                opened.st_uid, opened.st_gid, stat.S_IMODE(opened.st_mode), read_xattrs(fd, shown)
            )
            return read_all(fd), attributes
        finally:
            os.close(fd)

    def prepare(self, name: str, data: bytes, attributes: "FileAttributes") -> str:
        """Write ``data`` to a new temporary file next to ``name``, with ``attributes``, fsynced: its name.

        Nothing else changes until commit(); a failure (e.g. an attribute this filesystem will not take)
        removes the temporary file.
        """
        temp = "." + name + TEMP_INFIX + "%d-%s" % (os.getpid(), os.urandom(4).hex())
        if IS_WINDOWS:  # pragma: no cover
            with open(os.path.join(self.path, temp), "xb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            return temp
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(temp, flags, 0o600, dir_fd=self.fd)
        try:
            try:
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                apply_attributes(fd, attributes, self.logical.rstrip("/\\") + "/" + name)
                os.fsync(fd)
            finally:
                os.close(fd)
        except BaseException:
            self.discard(temp)
            raise
        return temp

    def commit(self, temp: str, name: str) -> None:
        """Rename a prepared temporary file over ``name`` and fsync the directory."""
        if IS_WINDOWS:  # pragma: no cover
            os.replace(os.path.join(self.path, temp), os.path.join(self.path, name))
            return
        try:
            os.rename(temp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except BaseException:
            self.discard(temp)
            raise
        os.fsync(self.fd)

    def discard(self, temp: str) -> None:
        with contextlib.suppress(OSError):
            if IS_WINDOWS:  # pragma: no cover
                os.remove(os.path.join(self.path, temp))
            else:
                os.unlink(temp, dir_fd=self.fd)

    def write_atomic(self, name: str, data: bytes, attributes: "FileAttributes") -> None:
        """Temp file in the same directory, fsync, rename over ``name``, fsync the directory."""
        self.commit(self.prepare(name, data, attributes), name)

    def remove(self, name: str) -> None:
        if IS_WINDOWS:  # pragma: no cover
            os.remove(os.path.join(self.path, name))
            return
        os.unlink(name, dir_fd=self.fd)
        os.fsync(self.fd)

    def tighten(self, name: str, attributes: "FileAttributes") -> None:
        """An unchanged file keeps its attributes, except that others lose every bit (see FileAttributes)."""
        if IS_WINDOWS or attributes.kept().mode == attributes.mode:  # pragma: no cover - Windows
            return
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=self.fd)
        try:
            os.fchmod(fd, attributes.kept().mode)
        finally:
            os.close(fd)
        log("removed the permissions of others on %s" % name)

    def remove_stale_temps(self, name: str) -> None:
        """Temp files of runs killed mid-write (we hold the lock: none is in use; the names are ours)."""
        if IS_WINDOWS:  # pragma: no cover
            return
        prefixes = ("." + name + TEMP_INFIX, "." + name + BACKUP_SUFFIX + TEMP_INFIX)
        for entry in os.listdir(self.fd):
            if entry.startswith(prefixes):
                st = os.stat(entry, dir_fd=self.fd, follow_symlinks=False)
                if not stat.S_ISDIR(st.st_mode):  # unlink never follows a symlink
                    os.unlink(entry, dir_fd=self.fd)
                    log("removed stale temp file " + entry)


# -------------------------------------------------------------------------------------- file attributes


class FileAttributes(object):
    """What a rewrite keeps of the file it replaces: owner, group, mode and extended attributes.

    ``xattrs`` holds every extended attribute (POSIX ACLs are ``system.posix_acl_access``, the SELinux label
    is ``security.selinux``), or is None for a new file, which keeps what its directory gives it (e.g. a
    default ACL). A secret is never left to others: the kept mode drops every bit of "others" (and the
    set-id and sticky bits).
    """

    def __init__(self, uid: int, gid: int, mode: int, xattrs: Optional[Dict[str, bytes]]) -> None:
        self.uid = uid
        self.gid = gid
        self.mode = mode
        self.xattrs = xattrs

    def kept(self) -> "FileAttributes":
        return FileAttributes(self.uid, self.gid, self.mode & 0o770, self.xattrs)


def list_xattrs(fd: int) -> List[str]:
    """Names of the extended attributes of ``fd`` ([] where the filesystem or Python has none)."""
    if not hasattr(os, "listxattr"):  # not Linux: ACLs cannot be seen (docs/agent.md)
        return []
    try:
        return os.listxattr(fd)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, getattr(errno, "EOPNOTSUPP", errno.ENOTSUP)):
            return []
        raise


def read_xattrs(fd: int, shown: str) -> Optional[Dict[str, bytes]]:
    if not hasattr(os, "getxattr"):
        return None
    try:
        return {name: os.getxattr(fd, name) for name in list_xattrs(fd)}
    except OSError as exc:
        raise AgentError(
            "attributes_not_kept",
            "cannot read the extended attributes of %s (%s); nothing was changed"
            % (shown, exc.strerror or exc),
        ) from None


def apply_attributes(fd: int, attributes: FileAttributes, shown: str) -> None:
    """Give the new file (``fd``) the old one's owner, group, extended attributes, then mode.

    chown first (it may clear set-id bits and capabilities), the mode last: chmod rewrites an ACL's owner,
    mask and other entries from the mode, which are the old ones except that others get nothing.
    """
    os.fchown(fd, attributes.uid, attributes.gid)
    if attributes.xattrs is not None:
        name = ""
        try:
            for name in list_xattrs(fd):
                if name not in attributes.xattrs:  # e.g. inherited from the directory's default ACL
                    os.removexattr(fd, name)
            for name, value in sorted(attributes.xattrs.items()):
                os.setxattr(fd, name, value)
        except OSError as exc:
            raise AgentError(
                "attributes_not_kept",
                "cannot give the rewritten %s the extended attribute %s it has (%s); nothing was changed"
                % (shown, name, exc.strerror or exc),
            ) from None
    os.fchmod(fd, attributes.mode)
    st = os.fstat(fd)
    if (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) != (attributes.uid, attributes.gid, attributes.mode):
        raise AgentError(
            "attributes_not_kept",
            "the rewritten %s did not keep owner %d, group %d and mode %o; nothing was changed"
            % (shown, attributes.uid, attributes.gid, attributes.mode),
        )


# ------------------------------------------------------------------------------------ credentials file

# configparser's own header and option expressions (RawConfigParser._SECT_TMPL / _OPT_TMPL): botocore
# parses credentials files with RawConfigParser, so this is what every SDK and the CLI will see.
SECTION_RE = re.compile(r"\[(?P<header>.+)\]")
OPTION_RE = re.compile(r"(?P<option>.*?)\s*(?P<vi>[=:])\s*(?P<value>.*)$")
NONSPACE_RE = re.compile(r"\S")


def parse_credentials(text: str) -> Dict[str, Dict[str, str]]:
    """Parse like botocore (strict RawConfigParser, universal newlines); raises configparser.Error."""
    parser = configparser.RawConfigParser()
    parser.read_file(io.StringIO(text, newline=None), source="credentials")
    return {section: dict(parser.items(section, raw=True)) for section in parser.sections()}


def split_lines(text: str) -> List[str]:
    """Lines with their own endings; the last one may have none."""
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def line_ending(line: str) -> str:
    if line.endswith("\r\n"):
        return "\r\n"
    if line.endswith("\n"):
        return "\n"
    return ""


def classify_lines(lines: List[str]) -> List[Tuple[str, Optional[str], Optional[int]]]:
    """Per line: (kind, section, option line index), following configparser's reading loop.

    kind is blank, comment, section, option or continuation; for option/continuation lines the index is the
    line where the option starts (a value may continue over indented lines, even past blanks and comments).
    """
    result = []  # type: List[Tuple[str, Optional[str], Optional[int]]]
    section = None  # type: Optional[str]
    option_line = None  # type: Optional[int]
    indent_level = 0
    for index, raw in enumerate(lines):
        line = raw[: -len(line_ending(raw))] if line_ending(raw) else raw
        stripped = line.strip()
        if stripped.startswith(("#", ";")):
            result.append(("comment", section, option_line))
            continue
        if not stripped:
            result.append(("blank", section, option_line))
            continue
        first = NONSPACE_RE.search(line)
        indent = first.start() if first else 0
        if section is not None and option_line is not None and indent > indent_level:
            result.append(("continuation", section, option_line))
            continue
        indent_level = indent
        header = SECTION_RE.match(stripped)
        if header:
            section = header.group("header")
            option_line = None
            result.append(("section", section, None))
        else:
            option_line = index
            result.append(("option", section, index))
    return result


def option_name(line: str) -> str:
    match = OPTION_RE.match(line.strip())
    return match.group("option").rstrip().lower() if match else ""


def replace_value(line: str, value: str) -> str:
    """Keep the line's key, separator and spacing; replace the value; keep the line ending."""
    eol = line_ending(line)
    body = line[: -len(eol)] if eol else line
    match = re.match(r"\s*[^=:]*?\s*[=:][ \t]*", body)
    prefix = match.group(0) if match else body
    return prefix + value + eol


def rewrite_profile(text: str, profile: str, key_id: str, secret: str) -> str:
    """``text`` with only ``[profile]``'s key id and secret key replaced (session token dropped)."""
    lines = split_lines(text)
    eol = next((line_ending(line) for line in lines if line_ending(line)), "\n")
    kinds = classify_lines(lines)
    wanted = {KEY_ID: key_id, SECRET_KEY: secret}
    header_index = next((i for i, k in enumerate(kinds) if k[0] == "section" and k[1] == profile), None)

    if header_index is None:
        block = ["[" + profile + "]" + eol, KEY_ID + " = " + key_id + eol, SECRET_KEY + " = " + secret + eol]
        if not lines:
            return "".join(block)
        out = list(lines)
        ends_without_newline = not line_ending(out[-1])
        if ends_without_newline:
            out[-1] += eol
            block[-1] = block[-1][: -len(eol)]
        return "".join(out) + eol + "".join(block)

    out = list(lines)
    drop = set()  # line indexes removed
    last_in_section = header_index
    found = set()
    for index, (kind, section, start) in enumerate(kinds):
        if section != profile or index <= header_index or kind == "section":
            continue
        if kind in ("option", "continuation"):
            last_in_section = index
        if kind == "blank" or kind == "comment":
            continue
        name = option_name(lines[start]) if start is not None else ""
        if name not in (KEY_ID, SECRET_KEY, SESSION_TOKEN):
            continue
        if kind == "option":
            if name == SESSION_TOKEN:
                drop.add(index)
            else:
                out[index] = replace_value(lines[index], wanted[name])
                found.add(name)
        elif start is not None:  # a continuation of one of our options: it goes, with blanks/comments inside
            drop.update(range(start + 1, index + 1))
    # The option's extent may end without newline at EOF; a replaced option line keeps its own ending.
    if any(line_ending(lines[i]) == "" for i in drop) and drop:
        keep = [i for i in range(len(lines)) if i not in drop]
        if keep and line_ending(out[keep[-1]]):
            out[keep[-1]] = out[keep[-1]][: -len(line_ending(out[keep[-1]]))]
    missing = [name for name in (KEY_ID, SECRET_KEY) if name not in found]
    if missing:
        insert_at = last_in_section
        while insert_at in drop:
            insert_at -= 1
        # configparser reads a line indented deeper than the current option as its continuation. So our
        # lines take the indentation of the option in effect (they must not continue it); right after the
        # header, that of the next line that counts (which must not continue ours).
        in_effect = kinds[insert_at][2]
        if in_effect is not None:
            reference = lines[in_effect]
        else:
            following = [
                lines[i]
                for i in range(insert_at + 1, len(lines))
                if i not in drop and kinds[i][0] not in ("blank", "comment")
            ]
            reference = following[0] if following else lines[header_index]
        indent = reference[: len(reference) - len(reference.lstrip(" \t"))]
        added = [indent + name + " = " + wanted[name] + eol for name in missing]
        if not line_ending(out[insert_at]):
            out[insert_at] += eol
            added[-1] = added[-1][: -len(eol)]
        out[insert_at] = out[insert_at] + "".join(added)
    return "".join(line for i, line in enumerate(out) if i not in drop)


def decode_credentials(data: bytes, shown: str) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise AgentError("unparseable_file", "%s is not UTF-8; the AWS SDKs cannot read it" % shown) from None
    if re.search(r"\r(?!\n)", text):
        raise AgentError("unsupported_file", "%s has bare carriage returns (old Mac line endings)" % shown)
    try:
        parse_credentials(text)
    except configparser.Error as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise AgentError(
            "unparseable_file",
            "%s cannot be parsed by the AWS SDKs (%s: %s); fix it by hand, nothing was changed"
            % (shown, type(exc).__name__, first[:200]),
        ) from None
    return text


def check_rewrite(old: str, new: str, profile: str, key_id: str, secret: str) -> None:
    """What the SDKs will read from ``new`` differs from ``old`` only in the profile's keys."""
    before = parse_credentials(old) if old else {}
    try:
        after = parse_credentials(new)
    except configparser.Error as exc:
        raise AgentError(
            "unsupported_file", "the rewritten file would not parse (%s)" % type(exc).__name__
        ) from None
    expected = dict(before)
    section = {k: v for k, v in before.get(profile, {}).items() if k != SESSION_TOKEN}
    section.update({KEY_ID: key_id, SECRET_KEY: secret})
    expected[profile] = section
    if after != expected:
        raise AgentError(
            "unsupported_file",
            "cannot rewrite profile %s without changing other settings (e.g. a [DEFAULT] section)" % profile,
        )


# ------------------------------------------------------------------------------------------------ AWS


def region_for(secret_id: str) -> Optional[str]:
    match = re.match(r"arn:aws[a-z-]*:secretsmanager:([a-z0-9-]+):", secret_id)
    if match:
        return match.group(1)
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_SSM_REGION_NAME"):
        if os.environ.get(name):
            return os.environ[name]
    return None


class AwsClient:
    """The two calls the agent makes, through botocore if importable, else the AWS CLI.

    KEYROTATION_AWS_CLIENT=cli forces the CLI (tests; servers whose botocore is broken), =botocore forbids it.
    """

    def __init__(self) -> None:
        choice = os.environ.get("KEYROTATION_AWS_CLIENT", "auto")
        if choice not in ("auto", "botocore", "cli"):
            raise AgentError("invalid_parameter", "KEYROTATION_AWS_CLIENT must be auto, botocore or cli")
        self.botocore = None  # type: Any
        if choice != "cli":
            try:
                import botocore.session

                self.botocore = botocore
            except ImportError:
                if choice == "botocore":
                    raise AgentError("no_aws_client", "botocore is not importable") from None
        self.cli = None  # type: Optional[str]
        if self.botocore is None:
            self.cli = find_cli()
            if self.cli is None:
                raise AgentError(
                    "no_aws_client", "neither botocore nor the AWS CLI is available on this server"
                )
        self.kind = "botocore" if self.botocore is not None else "cli"
        self._loader = None  # type: Any
        self._loader_path = None  # type: Any

    def _config(self) -> Any:
        from botocore.config import Config
        from botocore.exceptions import InvalidRetryConfigurationError

        try:
            return Config(
                retries={"mode": "standard", "max_attempts": 4}, connect_timeout=10, read_timeout=30
            )
        except InvalidRetryConfigurationError:
            # botocore < 1.15 (e.g. Ubuntu 18.04's python3-botocore, on Python 3.6) has no retry modes: it
            # refuses "mode", which would fail every call. Its legacy retries still cover throttling.
            return Config(retries={"max_attempts": 4}, connect_timeout=10, read_timeout=30)

    def _share_loader(self, session: Any) -> None:
        """One data loader for every session of this run (same data path): botocore's JSON (endpoints,
        partitions, defaults, the service models) is read and parsed once per run, not once per session.

        The sessions themselves stay separate: the secret is fetched with this server's own credentials, the
        proof is signed with the rotated profile's, and botocore ties one credential chain to one session.
        """
        data_path = session.get_config_variable("data_path")
        if self._loader is not None and data_path == self._loader_path:
            session.register_component("data_loader", self._loader)
        else:
            self._loader = session.get_component("data_loader")
            self._loader_path = data_path

    def get_secret_string(self, secret_id: str) -> str:
        region = region_for(secret_id)
        if self.botocore is not None:
            session = self.botocore.session.get_session()
            try:
                self._share_loader(session)
                client = session.create_client("secretsmanager", region_name=region, config=self._config())
                response = client.get_secret_value(SecretId=secret_id, VersionStage="AWSCURRENT")
            except Exception as exc:  # noqa: BLE001 - any botocore failure is reported by its code
                raise AgentError(
                    "secret_fetch_failed", "GetSecretValue failed: " + botocore_error(exc)
                ) from None
        else:
            args = [
                "secretsmanager",
                "get-secret-value",
                "--secret-id=" + secret_id,
                "--version-stage",
                "AWSCURRENT",
            ]
            response = run_cli(
                self.cli or "aws", args, region, dict(os.environ), "secret_fetch_failed", "GetSecretValue"
            )
        value = response.get("SecretString") if isinstance(response, dict) else None
        if not isinstance(value, str):
            raise AgentError("secret_malformed", "the secret has no SecretString")
        return value

    def caller_arn(self, credentials_file: str, profile: str, key_id: str, region: Optional[str]) -> str:
        """sts:GetCallerIdentity signed with ``profile`` of ``credentials_file`` only (no env credentials,
        no config file): what a consumer of that profile will get."""
        if self.botocore is not None:
            try:
                session = self.botocore.session.Session(profile=profile)
                session.set_config_variable("credentials_file", credentials_file)
                session.set_config_variable("config_file", os.devnull)
                self._share_loader(session)
                credentials = session.get_credentials()
                if credentials is None or credentials.method != "shared-credentials-file":
                    raise AgentError("verification_failed", "botocore did not take the keys from the file")
                if credentials.access_key != key_id:
                    raise AgentError("verification_failed", "botocore read another key from the file")
                client = session.create_client(
                    "sts", region_name=region or "us-east-1", config=self._config()
                )
                return str(client.get_caller_identity()["Arn"])
            except AgentError:
                raise
            except Exception as exc:  # noqa: BLE001
                raise AgentError(
                    "verification_failed", "GetCallerIdentity failed: " + botocore_error(exc)
                ) from None
        env = dict(os.environ)
        for name in (
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_SECURITY_TOKEN",
            "AWS_PROFILE",
            "AWS_DEFAULT_PROFILE",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_ROLE_ARN",
        ):
            env.pop(name, None)
        env["AWS_SHARED_CREDENTIALS_FILE"] = credentials_file
        env["AWS_CONFIG_FILE"] = os.devnull
        env["AWS_EC2_METADATA_DISABLED"] = "true"
        args = ["sts", "get-caller-identity", "--profile", profile]
        response = run_cli(
            self.cli or "aws", args, region or "us-east-1", env, "verification_failed", "GetCallerIdentity"
        )
        return str(response.get("Arn", ""))


def botocore_error(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", "Unknown"))
    return type(exc).__name__


def find_cli() -> Optional[str]:
    configured = os.environ.get("KEYROTATION_AWS_CLI")
    if configured:
        return configured
    import shutil

    found = shutil.which("aws")
    if found:
        return found
    for candidate in (
        "/usr/local/bin/aws",
        "/usr/bin/aws",
        "/snap/bin/aws",
        r"C:\Program Files\Amazon\AWSCLIV2\aws.exe",
    ):
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def run_cli(
    cli: str, args: List[str], region: Optional[str], env: Dict[str, str], code: str, call: str
) -> Any:
    env["AWS_PAGER"] = ""
    command = [cli] + args + ["--output", "json"]
    if region:
        command += ["--region", region]
    try:
        proc = subprocess.run(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AgentError(code, "%s via the AWS CLI failed: %s" % (call, type(exc).__name__)) from None
    if proc.returncode != 0:
        stderr = proc.stderr.decode("utf-8", "replace")
        match = re.search(r"\(([A-Za-z0-9.]+)\) when calling", stderr)
        reason = match.group(1) if match else "exit %d: %s" % (proc.returncode, stderr.strip()[-200:])
        raise AgentError(code, "%s via the AWS CLI failed: %s" % (call, reason))
    try:
        return json.loads(proc.stdout.decode("utf-8"))
    except ValueError:
        raise AgentError(code, "%s via the AWS CLI returned no JSON" % call) from None


def parse_secret(value: str, expected: str) -> Tuple[str, str]:
    try:
        data = json.loads(value)
    except ValueError:
        raise AgentError("secret_malformed", "the secret is not a JSON object") from None
    if not isinstance(data, dict):
        raise AgentError("secret_malformed", "the secret is not a JSON object")
    key_id = data.get(KEY_ID)
    secret = data.get(SECRET_KEY)
    if not isinstance(key_id, str) or not re.fullmatch(PATTERNS["ExpectedAccessKeyId"], key_id) or not key_id:
        raise AgentError("secret_malformed", "the secret's %s is missing or not an access key id" % KEY_ID)
    if not isinstance(secret, str) or not re.fullmatch(SECRET_KEY_PATTERN, secret):
        raise AgentError("secret_malformed", "the secret's %s is missing or malformed" % SECRET_KEY)
    if expected and key_id != expected:
        raise AgentError(
            "stale_secret",
            "the secret holds %s, expected %s (stale read); nothing was changed" % (key_id, expected),
        )
    return key_id, secret


def prove_key_works(
    aws: AwsClient, credentials_file: str, profile: str, key_id: str, region: Optional[str]
) -> str:
    """Retry GetCallerIdentity while IAM propagates the new key (KEYROTATION_VERIFY_TIMEOUT, default 60 s)."""
    budget = env_float("KEYROTATION_VERIFY_TIMEOUT", 60.0)
    interval = env_float("KEYROTATION_VERIFY_INTERVAL", 5.0)
    deadline = time.monotonic() + budget
    attempt = 0
    while True:
        attempt += 1
        try:
            return aws.caller_arn(credentials_file, profile, key_id, region)
        except AgentError as exc:
            if time.monotonic() + interval > deadline:
                raise AgentError(
                    "verification_failed", "%s (after %d attempts in %.0f s)" % (exc.message, attempt, budget)
                ) from None
            log("attempt %d: %s; retrying" % (attempt, exc.message))
            time.sleep(interval)


# ------------------------------------------------------------------------------- the owner's read check

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


# ---------------------------------------------------------------------------------------------- hooks


def run_hook(name: str, context: Dict[str, str]) -> None:
    """Run ``name`` from the hooks directory: root-owned chain, not group/world-writable, with a timeout."""
    parts = split_logical(HOOKS_DIR) + [name]
    path = host_path("/")
    shown = ""
    for index, part in enumerate(parts):
        path = os.path.join(path, part)
        shown += "/" + part
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            raise AgentError(
                "hook_failed", "reload hook %s not found (%s is missing)" % (name, shown)
            ) from None
        last = index == len(parts) - 1
        if stat.S_ISLNK(st.st_mode):
            raise AgentError("hook_failed", "%s is a symlink" % shown)
        if last and not stat.S_ISREG(st.st_mode) or not last and not stat.S_ISDIR(st.st_mode):
            raise AgentError("hook_failed", "%s is not a %s" % (shown, "file" if last else "directory"))
        if st.st_uid != 0:
            raise AgentError("hook_failed", "%s is not owned by root" % shown)
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise AgentError("hook_failed", "%s is writable by group or others" % shown)
        if last and not st.st_mode & stat.S_IXUSR:
            raise AgentError("hook_failed", "%s is not executable" % shown)
    timeout = env_float("KEYROTATION_HOOK_TIMEOUT", 120.0)
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    env.update(context)
    # The document runs us under umask 077; a daemon (re)started by the hook should not inherit it.
    previous_umask = os.umask(0o022)
    try:
        proc = subprocess.Popen(
            [path],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd="/",
            start_new_session=True,
        )
    finally:
        os.umask(previous_umask)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        import signal

        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AgentError("hook_failed", "reload hook %s timed out after %.0f s" % (name, timeout)) from None
    text = output.decode("utf-8", "replace").strip()
    if len(text) > HOOK_OUTPUT_SHOWN:  # bounded: the SSM Agent keeps little of the command's output
        log("hook %s wrote %d characters; the last %d:" % (name, len(text), HOOK_OUTPUT_SHOWN))
        text = text[-HOOK_OUTPUT_SHOWN:]
    if text:
        log("hook %s: %s" % (name, text))
    if proc.returncode != 0:
        raise AgentError("hook_failed", "reload hook %s exited %d: %s" % (name, proc.returncode, text[-200:]))


# ------------------------------------------------------------------------------------------- actions


def split_file(logical: str) -> Tuple[str, str]:
    match = re.match(r"^(.*)[/\\]([^/\\]+)$", logical)
    if not match:
        raise AgentError("invalid_parameter", "CredentialsFile has no directory")
    return (match.group(1) or "/"), match.group(2)


def rotate(params: Dict[str, str], result: Dict[str, Any], secrets: List[str]) -> None:
    logical = params["CredentialsFile"]
    profile = params["Profile"]
    owner = resolve_owner(params["FileOwner"])
    logical_dir, name = split_file(logical)
    aws = AwsClient()
    directory = Directory(logical_dir, owner, create=True)
    try:
        directory.lock(env_float("KEYROTATION_LOCK_TIMEOUT", 120.0))
        directory.remove_stale_temps(name)
        found = directory.read_file(name)
        data, attributes = found if found is not None else (None, None)
        old_text = decode_credentials(data, logical) if data is not None else ""

        key_id, secret = parse_secret(
            aws.get_secret_string(params["SecretId"]), params["ExpectedAccessKeyId"]
        )
        secrets.append(secret)
        result["access_key_id"] = key_id

        new_text = rewrite_profile(old_text, profile, key_id, secret)
        check_rewrite(old_text, new_text, profile, key_id, secret)
        new_data = new_text.encode("utf-8")
        changed = data is None or new_text != old_text
        result["changed"] = changed
        if changed:
            # A new file: 0600, owned by FileOwner. An existing one keeps its owner, group, mode and
            # extended attributes (ACLs, SELinux label), or is refused before anything changes.
            kept = (
                attributes.kept()
                if attributes is not None
                else FileAttributes(owner[0], owner[1], 0o600, None)
            )
            try:
                temp = directory.prepare(name, new_data, kept)
            except OSError as exc:
                raise AgentError(
                    "write_failed", "cannot write %s: %s" % (logical, exc.strerror or exc)
                ) from None
            try:
                if data is not None:
                    directory.write_atomic(name + BACKUP_SUFFIX, data, FileAttributes(0, 0, 0o600, None))
                    result["backup"] = logical + BACKUP_SUFFIX
                directory.commit(temp, name)
            except OSError as exc:
                directory.discard(temp)
                raise AgentError(
                    "write_failed", "cannot write %s: %s" % (logical, exc.strerror or exc)
                ) from None
            log("wrote profile %s of %s" % (profile, logical))
        else:
            if attributes is not None:
                directory.tighten(name, attributes)
            log("profile %s of %s already holds %s" % (profile, logical, key_id))
        try:
            check_owner_reads(logical, params["FileOwner"], owner, new_data)
            result["caller_arn"] = prove_key_works(
                aws, directory_file(directory, name), profile, key_id, region_for(params["SecretId"])
            )
        except AgentError as failure:
            if changed:
                restore(directory, name, data, attributes, logical)
                failure.message += "; the previous file was restored"
            raise failure from None
    finally:
        directory.close()
    if params["ReloadHook"]:
        run_hook(
            params["ReloadHook"],
            {
                "KEYROTATION_PROFILE": profile,
                "KEYROTATION_CREDENTIALS_FILE": logical,
                "KEYROTATION_FILE_OWNER": params["FileOwner"],
                "KEYROTATION_ACCESS_KEY_ID": key_id,
            },
        )
        result["hook"] = params["ReloadHook"]


def directory_file(directory: Directory, name: str) -> str:
    return os.path.join(directory.path, name)


def restore(
    directory: Directory,
    name: str,
    data: Optional[bytes],
    attributes: Optional[FileAttributes],
    logical: str,
) -> None:
    """Put back the file as it was (content and attributes), or remove the one the agent created."""
    try:
        if data is None or attributes is None:
            directory.remove(name)
        else:
            directory.write_atomic(name, data, attributes)
        log("restored the previous %s" % logical)
    except (OSError, AgentError) as exc:
        reason = exc.message if isinstance(exc, AgentError) else exc.strerror or str(exc)
        raise AgentError(
            "restore_failed", "the rotation failed and restoring %s failed: %s" % (logical, reason)
        ) from None


def audit(params: Dict[str, str], result: Dict[str, Any]) -> None:
    """Report which access key id the profile holds (``held``: key, no_file or no_profile) and whether it is
    ExpectedAccessKeyId (``matches``). Read-only: no lock (the file is only ever replaced by a rename, so a
    read is never torn), no AWS call, no secret fetched, nothing written; the secret in the file is never
    read into the result."""
    logical = params["CredentialsFile"]
    profile = params["Profile"]
    owner = resolve_owner(params["FileOwner"])
    logical_dir, name = split_file(logical)
    try:
        directory = Directory(logical_dir, owner, create=False)
    except AgentError as exc:
        if "does not exist" in exc.message:
            result["held"] = "no_file"
            return
        raise
    try:
        found = directory.read_file(name)
        if found is None:
            result["held"] = "no_file"
            return
        section = parse_credentials(decode_credentials(found[0], logical)).get(profile)
        if section is None:
            result["held"] = "no_profile"
            return
        result["held"] = "key"
        result["access_key_id"] = section.get(KEY_ID, "") or None
        result["matches"] = bool(params["ExpectedAccessKeyId"]) and (
            result["access_key_id"] == params["ExpectedAccessKeyId"]
        )
    finally:
        directory.close()


def verify(params: Dict[str, str], result: Dict[str, Any]) -> None:
    logical = params["CredentialsFile"]
    profile = params["Profile"]
    owner = resolve_owner(params["FileOwner"])
    logical_dir, name = split_file(logical)
    aws = AwsClient()
    try:
        directory = Directory(logical_dir, owner, create=False)
    except AgentError as exc:
        if "does not exist" in exc.message:
            raise AgentError("key_mismatch", exc.message) from None
        raise
    try:
        directory.lock(env_float("KEYROTATION_LOCK_TIMEOUT", 120.0))
        found = directory.read_file(name)
        if found is None:
            raise AgentError("key_mismatch", "%s does not exist" % logical)
        data = found[0]
        section = parse_credentials(decode_credentials(data, logical)).get(profile)
        if section is None:
            raise AgentError("key_mismatch", "%s has no profile %s" % (logical, profile))
        key_found = section.get(KEY_ID, "")
        result["access_key_id"] = key_found
        if key_found != params["ExpectedAccessKeyId"]:
            raise AgentError(
                "key_mismatch",
                "profile %s holds %s, expected %s"
                % (profile, key_found or "no key", params["ExpectedAccessKeyId"]),
            )
        check_owner_reads(logical, params["FileOwner"], owner, data)
        result["caller_arn"] = prove_key_works(
            aws, directory_file(directory, name), profile, key_found, region_for(params["SecretId"])
        )
    finally:
        directory.close()


# ---------------------------------------------------------------------------------------------- main


def shorten(value: str, size: int) -> str:
    """``value`` in at most ``size`` characters: its head and tail around "..." (paths, ARNs, messages)."""
    if len(value) <= size:
        return value
    head = (size - 3) // 2
    return value[:head] + "..." + value[len(value) - (size - 3 - head) :]


def result_line(result: Dict[str, Any], secrets: List[str]) -> str:
    """The result line, scrubbed of every secret and at most RESULT_LINE_LIMIT characters.

    ListCommandInvocations keeps 2,500 characters of stdout and stderr together; when both are long, the SSM
    Agent keeps only the first ~1,200 of stdout (docs/agent.md, "The result line"). Our stdout is this one
    line, so at 1,000 characters it always survives whole, whatever the hook or the diagnostics wrote.
    """

    def scrub(text: str) -> str:
        for secret in secrets:  # belt and braces: the secret must never reach command output
            if secret:
                text = text.replace(secret, "***")
        return text

    # Scrub the values before shortening them: a secret cut in half would no longer be recognised.
    shown = {key: scrub(value) if isinstance(value, str) else value for key, value in result.items()}
    while True:
        line = scrub(format_result(shown))
        if len(line) <= RESULT_LINE_LIMIT:
            return line
        # Halve the longest free-text field; status, error, action, profile and the key id are bounded.
        longest = max(
            (key for key in SHORTENABLE if isinstance(shown.get(key), str) and len(shown[key]) > 16),
            key=lambda key: len(json.dumps(shown[key], ensure_ascii=True)),
            default=None,
        )
        if longest is None:  # cannot happen with bounded fields; never print an over-long line
            return line[:RESULT_LINE_LIMIT]
        shown[longest] = shorten(shown[longest], len(shown[longest]) // 2)


def emit(result: Dict[str, Any], secrets: List[str]) -> None:
    sys.stdout.write(result_line(result, secrets) + "\n")
    sys.stdout.flush()


def main(argv: Optional[List[str]] = None) -> int:
    result = {
        "status": "error",
        "action": None,
        "profile": None,
        "file": None,
        "access_key_id": None,
        "caller_arn": None,
    }  # type: Dict[str, Any]
    secrets = []  # type: List[str]
    try:
        params = read_parameters(sys.argv[1:] if argv is None else argv)
        validate_parameters(params)  # before any value is echoed in the result line
        result.update(action=params["Action"], profile=params["Profile"], file=params["CredentialsFile"])
        refuse_ssm_agent_file(params["CredentialsFile"])
        if params["Action"] == "rotate":
            rotate(params, result, secrets)
        elif params["Action"] == "audit":
            audit(params, result)
        else:
            verify(params, result)
        result["status"] = "ok"
        emit(result, secrets)
        return 0
    except AgentError as exc:
        result.update(status="error", error=exc.code, message=exc.message[:1000])
        emit(result, secrets)
        return EXIT_CODES.get(exc.code, 1)
    except Exception as exc:  # noqa: BLE001 - the result line must be printed whatever happens
        result.update(status="error", error="internal", message=("%s: %s" % (type(exc).__name__, exc))[:1000])
        emit(result, secrets)
        return EXIT_CODES["internal"]


if __name__ == "__main__":
    sys.exit(main())

"""The credentials file's directory, held open by descriptor: the lock, reads, the atomic write
(temp file, fsync, rename), the backup, and the file attributes kept across the rewrite."""

import contextlib
import errno
import os
import stat
import time
from typing import Dict, List, Optional, Tuple

try:  # POSIX only
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

from .base import BACKUP_SUFFIX, IS_WINDOWS, AgentError, log
from .paths import host_path, split_logical

TEMP_INFIX = ".keyrotation-tmp-"


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

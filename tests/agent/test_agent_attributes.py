"""The rewrite keeps the credentials file's attributes, and the proof reads the file as its owner would
(issue 12 item 5).

An existing file keeps its owner, group, mode (others lose every bit), POSIX ACLs, SELinux label and every
other extended attribute, or is refused before anything changes. After writing, the agent reads the file as
FileOwner (uid, primary and supplementary groups) from the server's `/` down: a file the application
cannot read fails with `unreadable_by_owner` and the previous file is restored.

ACLs are set through their extended attribute (`system.posix_acl_access`, the kernel's binary format), so
the tests need no `setfacl`; the SELinux label is an ordinary `security.selinux` attribute where no SELinux
policy is loaded. Where the filesystem refuses either, the test is skipped and says why.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
import sys
from pathlib import Path

import pytest
from agent_support import APP_GID, APP_UID, Identity, Server, snapshot, write_credentials

OLD = b"[other]\naws_access_key_id = AKIAOTHEROTHEROTHER0\naws_secret_access_key = o\n[app]\n" + (
    b"aws_access_key_id = AKIAOLDOLDOLDOLDOLD0\naws_secret_access_key = oldsecret\n"
)
WEB_UID = 1001
READERS_GID = 2000
ACL = "system.posix_acl_access"
SELINUX = "security.selinux"
UNDEFINED = 0xFFFFFFFF


def posix_acl(*entries: tuple[int, int, int]) -> bytes:
    """The kernel's ACL xattr: version 2, then (tag, perm, id) entries sorted by tag and id."""
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *entry) for entry in sorted(entries))


# user::rw-, user:web:r--, group::r--, mask::r--, other::--- (as `setfacl -m u:web:r` on a 0640 file)
WEB_CAN_READ = posix_acl(
    (0x01, 6, UNDEFINED), (0x02, 4, WEB_UID), (0x04, 4, UNDEFINED), (0x10, 4, UNDEFINED), (0x20, 0, UNDEFINED)
)


def set_xattr_or_skip(path: Path, name: str, value: bytes) -> None:
    try:
        os.setxattr(path, name, value)
    except OSError as exc:
        reason = f"cannot set {name} on {path.parent} here ({errno.errorcode.get(exc.errno or 0, exc)})"
        print(reason)
        pytest.skip(reason)


def attributes(path: Path) -> tuple[int, int, int, dict[str, bytes]]:
    st = path.stat()
    xattrs = {name: os.getxattr(path, name) for name in os.listxattr(path)}
    return stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, xattrs


def credentials(server: Server, mode: int, uid: int = APP_UID, gid: int = APP_GID) -> Path:
    path = write_credentials(server, OLD)
    os.chown(path, uid, gid)
    path.chmod(mode)
    return path


def rotated(server: Server, identity: Identity, path: Path) -> None:
    run = server.run(server.params(identity))
    assert run.code == 0, run.stderr
    assert run.result["status"] == "ok" and run.result["changed"] is True
    assert identity.key_id.encode() in path.read_bytes()


def no_rotation_happened(server: Server, path: Path, before: tuple[int, int, int, dict[str, bytes]]) -> None:
    assert path.read_bytes() == OLD
    assert attributes(path) == before
    leftovers = [p.name for p in path.parent.iterdir() if ".keyrotation-tmp-" in p.name]
    assert leftovers == []


# ------------------------------------------------------------------------------------- attributes kept


def test_group_readable_file_keeps_its_mode_and_group(server: Server, identity: Identity) -> None:
    # GIVEN a 0640 file whose group (web's) lets a second daemon read it
    path = credentials(server, 0o640, gid=WEB_UID)
    # WHEN the agent rotates THEN the new file is still 0640, app's, group web
    rotated(server, identity, path)
    assert attributes(path)[:3] == (0o640, APP_UID, WEB_UID)


def test_root_owned_file_readable_by_the_app_group_stays_root_owned(
    server: Server, identity: Identity
) -> None:
    # GIVEN the app may read its credentials but not change them: root:app 0640
    path = credentials(server, 0o640, uid=0, gid=APP_GID)
    rotated(server, identity, path)
    # THEN the owner is still root (the app reads through its group: the owner's read check passes)
    assert attributes(path)[:3] == (0o640, 0, APP_GID)


def test_posix_acl_is_kept(server: Server, identity: Identity) -> None:
    # GIVEN a file with an ACL that lets web read it
    path = credentials(server, 0o640)
    set_xattr_or_skip(path, ACL, WEB_CAN_READ)
    before = attributes(path)
    rotated(server, identity, path)
    # THEN mode, owner, group and the ACL are those of the old file
    assert attributes(path) == before
    assert os.getxattr(path, ACL) == WEB_CAN_READ


def test_selinux_label_and_other_extended_attributes_are_kept(server: Server, identity: Identity) -> None:
    path = credentials(server, 0o600)
    set_xattr_or_skip(path, "user.backup-policy", b"exclude")
    set_xattr_or_skip(path, SELINUX, b"system_u:object_r:app_credentials_t:s0\x00")
    before = attributes(path)
    rotated(server, identity, path)
    assert attributes(path) == before


def test_an_acl_the_directory_would_give_a_new_file_is_not_added(server: Server, identity: Identity) -> None:
    # GIVEN a directory whose default ACL gives web read access to new files, and a file without an ACL
    path = credentials(server, 0o600)
    set_xattr_or_skip(
        path.parent,
        "system.posix_acl_default",
        posix_acl(
            (0x01, 7, UNDEFINED),
            (0x02, 4, WEB_UID),
            (0x04, 0, UNDEFINED),
            (0x10, 4, UNDEFINED),
            (0x20, 0, UNDEFINED),
        ),
    )
    rotated(server, identity, path)
    # THEN the rewritten file (a new inode, created in that directory) has no ACL either
    assert attributes(path) == (0o600, APP_UID, APP_GID, {})


def test_attribute_that_cannot_be_kept_is_refused_before_anything_changes(
    server: Server, identity: Identity, tmp_path: Path
) -> None:
    # GIVEN a labelled file, and a system that refuses to relabel (as an SELinux policy may): the agent runs
    # with os.setxattr failing for security.selinux
    path = credentials(server, 0o600)
    set_xattr_or_skip(path, SELINUX, b"system_u:object_r:app_credentials_t:s0\x00")
    wrapper = tmp_path / "refusing_setxattr.py"
    wrapper.write_text(
        "import errno, os, runpy, sys\n"
        "real = os.setxattr\n"
        "def setxattr(target, name, *args, **kwargs):\n"
        "    if name == 'security.selinux':\n"
        "        raise PermissionError(errno.EACCES, 'Permission denied')\n"
        "    return real(target, name, *args, **kwargs)\n"
        "os.setxattr = setxattr\n"
        "sys.argv = sys.argv[1:]\n"
        "sys.path[0] = os.path.dirname(os.path.abspath(sys.argv[0]))  # as `python3 script` has it\n"
        "runpy.run_path(sys.argv[0], run_name='__main__')\n"
    )
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\nexec {sys.executable} {wrapper} "$@"\n')
    python.chmod(0o755)
    before = snapshot(server.root)
    run = server.run(server.params(identity), python=str(python))
    # THEN it refuses with exit 3 and says which attribute, and every file is as it was (no backup, no temp)
    assert (run.code, run.result["error"]) == (3, "attributes_not_kept"), run.stderr
    assert SELINUX in run.result["message"] and "nothing was changed" in run.result["message"]
    assert snapshot(server.root) == before


# ---------------------------------------------------------------------------------- the owner's read check


def test_file_the_owner_cannot_read_fails_and_is_restored(server: Server, identity: Identity) -> None:
    # GIVEN a root-only file (0600 root:root) for an application running as app
    path = credentials(server, 0o600, uid=0, gid=0)
    before = attributes(path)
    run = server.run(server.params(identity))
    # THEN the rotation fails (root could read it, app cannot), and the old file is back as it was
    assert (run.code, run.result["error"]) == (11, "unreadable_by_owner"), run.stderr
    assert "app cannot read /home/app/.aws/credentials" in run.result["message"]
    assert "permission denied" in run.result["message"] and "restored" in run.result["message"]
    no_rotation_happened(server, path, before)
    assert identity.secret_key not in run.stdout + run.stderr


def test_directory_that_shuts_the_owner_out_fails_and_is_restored(server: Server, identity: Identity) -> None:
    # GIVEN app's own file in a directory only root may enter
    path = credentials(server, 0o600)
    os.chown(path.parent, 0, 0)
    path.parent.chmod(0o700)
    before = attributes(path)
    run = server.run(server.params(identity))
    assert (run.code, run.result["error"]) == (11, "unreadable_by_owner"), run.stderr
    no_rotation_happened(server, path, before)


@pytest.mark.parametrize("member", [True, False])
def test_the_owner_reads_through_a_supplementary_group(
    server: Server, identity: Identity, member: bool
) -> None:
    # GIVEN root:readers 0640, and app in readers (or not) in the server's /etc/group
    members = "app" if member else "web"
    server.path("/etc/group").write_text(f"root:x:0:\napp:x:1000:\nreaders:x:{READERS_GID}:{members}\n")
    path = credentials(server, 0o640, uid=0, gid=READERS_GID)
    before = attributes(path)
    run = server.run(server.params(identity))
    if member:
        assert run.code == 0, run.stderr
        assert attributes(path)[:3] == (0o640, 0, READERS_GID)
    else:
        assert (run.code, run.result["error"]) == (11, "unreadable_by_owner"), run.stderr
        no_rotation_happened(server, path, before)


def test_verify_fails_when_the_owner_cannot_read(server: Server, identity: Identity) -> None:
    # GIVEN a profile that holds the expected key, in a file app cannot read
    current = f"[app]\naws_access_key_id = {identity.key_id}\naws_secret_access_key = {identity.secret_key}\n"
    path = write_credentials(server, current.encode())
    os.chown(path, 0, 0)
    before = snapshot(server.root)
    run = server.run(server.params(identity, Action="verify"))
    # THEN verify does not confirm it, and writes nothing
    assert (run.code, run.result["error"]) == (11, "unreadable_by_owner"), run.stderr
    assert snapshot(server.root) == before


def test_unchanged_file_the_owner_cannot_read_fails(server: Server, identity: Identity) -> None:
    path = credentials(server, 0o600)
    assert server.run(server.params(identity)).code == 0
    path.parent.chmod(0o000)  # app's own directory, but closed to app too (root passes anyway)
    run = server.run(server.params(identity))
    assert (run.code, run.result["error"]) == (11, "unreadable_by_owner"), run.stderr
    assert run.result["changed"] is False

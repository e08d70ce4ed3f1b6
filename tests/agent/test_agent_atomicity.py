"""Atomicity and concurrency: whenever the agent is killed, the file is the old one or the new one; two runs
on one file never lose an update.

Under `pause_env` (tests/agent/pause/sitecustomize.py, from outside the agent) the agent sleeps at every
write step (credentials temp written, synced; backup temp written, synced, renamed, backup written;
renamed over the credentials) and announces each on stderr, so kills can be aimed at each step as well as
at random moments. The default run kills 16 times (~8 s); the `slow` variant 200.
"""

from __future__ import annotations

import fcntl
import os
import random
import signal
import stat
import time

import pytest
from agent_support import APP_UID, Identity, Server, make_identity, pause_env, write_credentials

OLD = (
    b"# ops\r\n[other]\r\naws_access_key_id = AKIAOTHEROTHEROTHER0\r\naws_secret_access_key = o\r\n"
    b"[app]\r\naws_access_key_id = AKIAOLDOLDOLDOLDOLD0\r\naws_secret_access_key = old\r\n"
)
PAUSE = 0.1


def kill_many(server: Server, identity: Identity, runs: int, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    path = server.path("/home/app/.aws/credentials")
    backup = path.with_name("credentials.keyrotation-backup")
    # The new content, from one undisturbed run
    write_credentials(server, OLD)
    first = server.run(server.params(identity))
    assert first.code == 0, first.stderr
    new = path.read_bytes()
    assert new != OLD
    outcomes = {"old": 0, "new": 0, "aimed": 0}
    aims = [7, 1, 7, 2, 7, 3, 7, 4, 7, 5, 7, 6]  # step 7 is the pause right after the rename
    for run in range(runs):
        write_credentials(server, OLD)
        backup.unlink(missing_ok=True)
        proc = server.start(server.params(identity), env=pause_env(PAUSE))
        assert proc.stderr is not None
        step = aims[(run // 2) % len(aims)] if run % 2 == 0 else None
        reached = False
        if step is not None:  # aim at the n-th write step, then a random moment inside its pause
            seen = 0
            for line in proc.stderr:
                if "test pause:" in line:
                    seen += 1
                    if seen == step:
                        reached = True
                        break
            time.sleep(rng.uniform(0, PAUSE / 3))
        else:  # any moment: start-up, fetch, write, verify
            time.sleep(rng.uniform(0, 0.9))
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        content = path.read_bytes()
        assert content in (OLD, new), "a killed run left a file that is neither the old nor the new one"
        st = path.stat()
        assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o600, APP_UID)
        if backup.exists():
            assert backup.read_bytes() == OLD
        outcomes["old" if content == OLD else "new"] += 1
        if reached:
            outcomes["aimed"] += 1
            if step == 7:  # killed after the rename (before the directory fsync): the new file
                assert content == new
    # A later run cleans up the temp files killed runs left behind
    final = server.run(server.params(identity))
    assert final.code == 0, final.stderr
    assert sorted(p.name for p in path.parent.iterdir()) == ["credentials", "credentials.keyrotation-backup"]
    return outcomes


def test_killed_at_any_moment_the_file_is_old_or_new(server: Server, identity: Identity) -> None:
    outcomes = kill_many(server, identity, runs=16, seed=20261122)
    # the kills really landed on both sides of the rename
    assert outcomes["aimed"] >= 6 and outcomes["old"] >= 3 and outcomes["new"] >= 3, outcomes


@pytest.mark.safety_slow  # the 200-kill version (R3 of docs/safety.md)
def test_killed_200_times_the_file_is_old_or_new(server: Server, identity: Identity) -> None:
    outcomes = kill_many(server, identity, runs=200, seed=7)
    assert outcomes["aimed"] >= 80 and outcomes["old"] >= 40 and outcomes["new"] >= 40, outcomes


def test_concurrent_runs_on_two_profiles_of_one_file_lose_nothing(server: Server, moto_url: str) -> None:
    # GIVEN two users whose keys live in two profiles of the same file
    first, second = make_identity(moto_url), make_identity(moto_url)
    path = write_credentials(server, OLD)
    slow = pause_env(0.1)
    # WHEN both rotations run at the same time, each pausing at every write step
    procs = [
        server.start(server.params(first, Profile="app"), env=slow),
        server.start(server.params(second, Profile="other"), env=slow),
    ]
    for proc in procs:
        proc.communicate(timeout=60)
        assert proc.returncode == 0
    # THEN the file holds both new keys (the directory lock serialized the read-modify-write)
    text = path.read_bytes().decode()
    assert f"[other]\r\naws_access_key_id = {second.key_id}\r\n" in text
    assert f"[app]\r\naws_access_key_id = {first.key_id}\r\n" in text
    assert text.startswith("# ops\r\n")


def test_a_held_lock_makes_the_run_fail_without_touching_the_file(server: Server, identity: Identity) -> None:
    path = write_credentials(server, OLD)
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        run = server.run(server.params(identity), env={"KEYROTATION_LOCK_TIMEOUT": "0.3"})
    finally:
        os.close(fd)
    assert (run.code, run.result["error"]) == (5, "locked")
    assert path.read_bytes() == OLD

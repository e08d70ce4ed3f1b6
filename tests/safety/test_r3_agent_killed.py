"""R3: the agent killed (SIGKILL) at ≥ 200 random points of its run.

After every kill: the credentials file is byte-for-byte the old or the new one, with mode 0600 and its owner;
every other file of the server (the SSM Agent's own credentials, the app's config, /etc/passwd, other files
in the app's home) is byte-identical; a backup, if one exists, is the old file; leftover temp files are
private (0600). A later run completes and cleans up. Kill points are drawn uniformly over the whole run
(start-up, fetch, write, verify) and, for a third of the runs, aimed at one of the agent's write steps,
announced by the pause that `pause_env` adds from outside the agent (tests/agent/pause/sitecustomize.py).
Reuses tests/agent/agent_support.py (the agent teammate's harness); its own kill test
(tests/agent/test_agent_atomicity.py) checks the credentials file alone.
"""

from __future__ import annotations

import random
import signal
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "agent"))
from agent_support import (  # noqa: E402
    APP_UID,
    Identity,
    Server,
    make_identity,
    make_server,
    pause_env,
    running_moto,
    write_credentials,
)

CREDENTIALS = "/home/app/.aws/credentials"
OLD = (
    b"# managed by ops\r\n[other]\r\naws_access_key_id = AKIAOTHEROTHEROTHER0\r\n"
    b"aws_secret_access_key = o\r\n"
    b"\r\n[app]\r\naws_access_key_id = AKIAOLDOLDOLDOLDOLD0\r\naws_secret_access_key = old\r\n"
    b"aws_session_token = stale\r\n[zz]\r\nregion = eu-west-1"
)
BYSTANDERS = {
    "/root/.aws/credentials": b"[default]\naws_access_key_id = ASIASSMAGENT00000000\n"
                              b"aws_secret_access_key = s\n",
    "/home/app/.aws/config": b"[profile app]\nregion = eu-west-1\n",
    "/home/app/notes.txt": "caf\u00e9\n".encode(),
}
PAUSE = 0.03
# Write steps the pause announces: file temp written, synced; backup temp written, synced, renamed, "backup
# written"; renamed over the file. A kill after the 7th leaves the new file, after any other the old one.
STEPS = 7


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    yield from running_moto()


def _snapshot(server: Server) -> dict[str, bytes]:
    """Every file of the server except the target, its backup and the agent's temp files."""
    aws = server.path(CREDENTIALS).parent
    return {str(p.relative_to(server.root)): p.read_bytes() for p in sorted(server.root.rglob("*"))
            if p.is_file() and not (p.parent == aws and p.name.lstrip(".").startswith("credentials"))}


def kill_at_random_points(server: Server, identity: Identity, kills: int, seed: int,
                          aimed_first: tuple[int, ...] = ()) -> dict[str, int]:
    """`aimed_first`: the write steps the first kills are aimed at, whatever the draw."""
    rng = random.Random(seed)
    path = server.path(CREDENTIALS)
    backup = path.with_name("credentials.keyrotation-backup")
    for logical, content in BYSTANDERS.items():
        target = server.path(logical)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    write_credentials(server, OLD)
    bystanders = _snapshot(server)
    started = time.monotonic()
    first = server.run(server.params(identity))
    duration = time.monotonic() - started
    assert first.code == 0, first.stderr
    new = path.read_bytes()
    assert new != OLD and new.startswith(OLD[:OLD.index(b"[app]")]) and new.endswith(OLD[OLD.index(b"[zz]"):])
    outcomes = {"old": 0, "new": 0, "aimed": 0, "kills": 0}
    for kill in range(kills):
        write_credentials(server, OLD)
        backup.unlink(missing_ok=True)
        forced = aimed_first[kill] if kill < len(aimed_first) else None
        aimed = forced is not None or rng.random() < 1 / 3
        env = pause_env(PAUSE) if aimed else {}
        proc = server.start(server.params(identity), env=env)
        if aimed:
            step, seen = forced or rng.randint(1, STEPS), 0
            assert proc.stderr is not None
            for line in proc.stderr:
                seen += "test pause:" in line
                if seen == step:
                    outcomes["aimed"] += 1
                    break
            time.sleep(rng.uniform(0, PAUSE))
        else:
            time.sleep(rng.uniform(0, duration * 1.1))
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        outcomes["kills"] += 1
        content = path.read_bytes()
        assert content in (OLD, new), f"kill {outcomes['kills']}: neither the old nor the new file"
        st = path.stat()
        assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o600, APP_UID), oct(st.st_mode)
        assert _snapshot(server) == bystanders, f"kill {outcomes['kills']}: another file changed"
        if backup.exists():
            assert backup.read_bytes() == OLD
        for leftover in path.parent.iterdir():  # temp files a killed run left may hold the new key
            mode = stat.S_IMODE(leftover.stat().st_mode)
            assert leftover.name == "config" or mode & 0o077 == 0, (leftover, oct(mode))
        outcomes["old" if content == OLD else "new"] += 1
    final = server.run(server.params(identity))
    assert final.code == 0, final.stderr
    assert path.read_bytes() == new
    assert sorted(p.name for p in path.parent.iterdir()) == ["config", "credentials",
                                                             "credentials.keyrotation-backup"]
    assert _snapshot(server) == bystanders
    print(f"R3 figures: {outcomes}")
    return outcomes


def test_agent_killed_at_random_points_sample(tmp_path: Path, moto_url: str) -> None:
    server = make_server(tmp_path / "server", moto_url)
    # Two kills aimed at either side of the rename over the credentials file (the first and the last write
    # step), so the sample covers both outcomes on a loaded machine too; six more drawn as in the full run.
    outcomes = kill_at_random_points(server, make_identity(moto_url), kills=8, seed=6, aimed_first=(1, STEPS))
    assert outcomes["old"] >= 1 and outcomes["new"] >= 1, outcomes


@pytest.mark.safety_slow
def test_agent_killed_at_200_random_points(tmp_path: Path, moto_url: str) -> None:
    server = make_server(tmp_path / "server", moto_url)
    outcomes = kill_at_random_points(server, make_identity(moto_url), kills=200, seed=20261122)
    # the kills landed on both sides of the rename, and many were aimed at the write steps
    assert outcomes["kills"] == 200 and outcomes["old"] >= 20 and outcomes["new"] >= 20, outcomes
    assert outcomes["aimed"] >= 40, outcomes

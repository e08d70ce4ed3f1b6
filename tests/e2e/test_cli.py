"""`python -m sandbox demo`: what `make demo` shows, and its last line as the machine-readable result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sandbox.cli import main

pytestmark = pytest.mark.slow


def test_demo_rotates_and_ends_with_a_json_result(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["demo", "--servers", "2", "--keep", str(tmp_path)])
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[-1])
    assert code == 0, lines
    assert result["result"] == "rotated" and result["invariants"] == "ok"
    assert result["users"] == 1 and result["servers_confirmed"] == result["servers_total"] == 2
    assert result["old_keys_deleted"] == result["old_key_ids"] and len(result["new_key_ids"]) == 1
    assert any("servers confirmed 2/2 (rotate)" in line for line in lines)
    assert any(line.strip().startswith("svc-web: ROTATED") for line in lines)
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["report"]["result"] == "rotated"
    # the kept servers hold the new key; the dump names ids, never secrets
    files = [p.read_text() for p in tmp_path.glob("servers/*/home/app/.aws/credentials")]
    assert len(files) == 2 and all(result["new_key_ids"][0] in text for text in files)
    secrets = [line.split("=", 1)[1].strip() for text in files for line in text.splitlines()
               if line.startswith("aws_secret_access_key")]
    dump = (tmp_path / "state.json").read_text()
    assert secrets and not any(secret in dump for secret in secrets)


def test_demo_rejects_impossible_scenarios(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--servers", "2", "--fail", "3"]) == 2
    assert "--fail" in capsys.readouterr().err


def test_a_broken_run_still_ends_with_a_json_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from sandbox import synth

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("synth exploded")

    monkeypatch.setattr(synth, "synthesize", broken)
    assert main(["demo", "--servers", "1"]) == 1
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["result"] == "failed" and "synth exploded" in last["error"]


def test_demo_audit_shows_the_drifted_and_the_offline_server_and_changes_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["demo", "--audit", "--servers", "3"])
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[-1])
    assert code == 0, lines
    assert result["result"] == "audited" and result["servers"]["current"] == 1
    assert (result["servers"]["unknown_key"], result["servers"]["offline"]) == (1, 1)
    assert any("unknown_key (AKIADRIFTEDDRIFTED00)" in line for line in lines)
    assert any("offline (ConnectionLost)" in line for line in lines)
    assert "nothing changed (keys, secrets, every server file)" in lines

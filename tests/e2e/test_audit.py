"""The audit in the sandbox: the real audit machine, handlers, document and agent, read-only end to end."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from sandbox import invariants
from sandbox.demo import Sandbox

pytestmark = pytest.mark.slow


def test_the_audit_names_each_servers_key_and_changes_nothing(make_sandbox: Callable[..., Sandbox]) -> None:
    # GIVEN one user on 3 servers: one holds another key (drifted), one is offline, one holds the current key
    sandbox = make_sandbox(users=1, servers=3)
    servers = sorted(sandbox.fleet.servers.values(), key=lambda s: s.instance_id)
    drifted, offline, current = servers
    sandbox.drift(drifted, "svc-web")
    offline.online = False
    before = sandbox.snapshot()
    # WHEN an operator runs the audit of every user
    report = sandbox.run_audit()
    # THEN nothing changed anywhere: keys, secrets, every byte on every server
    after = sandbox.snapshot()
    changed = {path for path in before["files"].keys() | after["files"].keys()
               if before["files"].get(path) != after["files"].get(path)}
    assert sorted(changed) == [] and after == before
    # AND the report names each server's state and the user's keys
    (entry,) = report["users"]
    initial = sandbox.initial_keys["svc-web"].key_id
    assert entry["current_key_id"] == initial and [k["key_id"] for k in entry["keys"]] == [initial]
    assert entry["keys"][0]["status"] == "Active" and entry["compliant"] is True
    states = {instance: server["state"] for instance, server in entry["servers"].items()}
    assert states == {drifted.instance_id: "unknown_key", offline.instance_id: "offline",
                      current.instance_id: "current"}
    assert entry["servers"][drifted.instance_id]["detail"] == "AKIADRIFTEDDRIFTED00"
    assert report["summary"]["servers"]["current"] == 1 and report["unmanaged_old_keys"] == []
    # AND the Markdown report sits beside it, and the topic got the summary; no secret anywhere
    bucket, key = report["markdown_location"].removeprefix("s3://").split("/", 1)
    markdown = sandbox.emulator.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    assert f"{drifted.instance_id}: unknown_key (AKIADRIFTEDDRIFTED00)" in markdown
    texts = dict(invariants.observable_texts(sandbox.emulator, sandbox.deployment))
    assert any(k.startswith("sns ") and "IAM key-rotation audit (read-only)" in v for k, v in texts.items())
    violations = invariants.check_all(sandbox.emulator, sandbox.deployment, sandbox.fleet,
                                      {"the audit report": json.dumps(report) + markdown})
    assert [v for v in violations if "secret" in v.lower()] == []


def test_the_audit_of_one_user_after_a_rotation_finds_every_server_current(
    make_sandbox: Callable[..., Sandbox],
) -> None:
    import time

    sandbox = make_sandbox(users=2, servers=2)
    sandbox.start_rotation("svc-app1")
    sandbox.follow(timeout=120)
    sandbox.fleet.wait_idle()
    started = time.monotonic()
    report = sandbox.run_audit("svc-app1")
    assert time.monotonic() - started < 120
    (entry,) = report["users"]
    assert entry["user"] == "svc-app1" and entry["compliant"] is True
    assert {s["state"] for s in entry["servers"].values()} == {"current"}
    assert len(entry["keys"]) == 1 and entry["keys"][0]["key_id"] == entry["current_key_id"]

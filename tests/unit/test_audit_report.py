"""The audit's classification of a server's answer, and the report built from the entries."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from rotation.audit import classify_server
from rotation.audit_report import build, markdown, notification

CURRENT, OLD, ELSE = "AKIACURRENTCURRENT00", "AKIAOLDOLDOLDOLDOLD0", "AKIASOMEONEELSES0000"
STATES = ("current", "stale", "unknown_key", "missing", "offline", "unsupported", "unreachable")


@pytest.mark.parametrize(("result", "expected"), [
    ({"status": "ok", "held": "key", "access_key_id": CURRENT}, ("current", CURRENT)),
    ({"status": "ok", "held": "key", "access_key_id": OLD}, ("stale", OLD)),
    ({"status": "ok", "held": "key", "access_key_id": ELSE}, ("unknown_key", ELSE)),
    ({"status": "ok", "held": "no_file"}, ("missing", "no_file")),
    ({"status": "ok", "held": "no_profile"}, ("missing", "no_profile")),
    ({"status": "error", "error": "unsafe_path", "message": "x is a symlink"},
     ("unreachable", "unsafe_path: x is a symlink")),
    (None, ("unreachable", "no result line")),
])
def test_a_servers_answer_is_classified(result: dict[str, str] | None, expected: tuple[str, str]) -> None:
    assert classify_server(result, CURRENT, {OLD}) == expected


def _entry(user: str, compliant: bool, servers: dict[str, str], exemption: dict[str, object] | None = None
           ) -> dict[str, object]:
    counts = dict.fromkeys(STATES, 0)
    for state in servers.values():
        counts[state] += 1
    entry: dict[str, object] = {
        "user": user, "server_group": "web", "current_key_id": CURRENT, "compliant": compliant,
        "keys": [{"key_id": CURRENT, "status": "Active", "created": "2026-09-01T00:00:00Z", "age_days": 93,
                  "last_used": None, "last_used_service": "N/A", "last_used_region": "N/A"}],
        "servers": {i: {"state": s, "detail": OLD if s == "stale" else ""} for i, s in servers.items()},
        "server_counts": counts,
    }
    if exemption:
        entry["exemption"] = exemption
    return entry


def test_the_report_counts_flags_expired_exemptions_and_reads_at_a_glance() -> None:
    entries = [
        _entry("svc-web", True, {"mi-1": "current", "mi-2": "stale"}),
        _entry("svc-db", False, {"mi-3": "offline"},
               {"until": "2026-11-30", "reason": "vendor appliance", "expired": True}),
    ]
    gap = [{"user": "alice", "arn": "arn:aws:iam::1:user/alice", "key": "1",
            "created": "2025-01-01T00:00:00Z", "age_days": 700}]
    when = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    report = build(entries, gap, run="audit-1", started=when, finished=when)
    summary = report["summary"]
    assert summary["users_not_compliant"] == ["svc-db"] and summary["expired_exemptions"] == ["svc-db"]
    assert summary["servers"]["stale"] == 1 and summary["servers"]["offline"] == 1
    text = markdown(report)
    assert f"mi-2: stale ({OLD})" in text and "exempt until 2026-11-30, **expired**" in text
    assert "| alice | 1 | 2025-01-01T00:00:00Z | 700 d |" in text
    subject, message = notification(report, "s3://bucket/audits/audit-1/report.md")
    assert subject == "Key audit: 2 users, 1 not compliant, 1 servers drifted"
    assert "Report: s3://bucket/audits/audit-1/report.md" in message

"""The audit report: one JSON document and its Markdown summary (rotation/audit.py gathers the entries).

Where it lives: the stack's reports bucket, `audits/<execution name>/report.json` and `report.md`, next to
the pages the audit wrote (`users-<cursor>.json`). Only ids, names, dates and counts: never a secret.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from rotation.audit import SERVER_STATES

S3Client = Any  # (boto3-stubs' S3 types are not among the pinned stubs)

PREFIX = "audits/"


def page_key(run: str, cursor: int) -> str:
    return f"{PREFIX}{run}/users-{cursor:06d}.json"


def write_page(s3: S3Client, bucket: str, run: str, cursor: int,
               entries: Sequence[Mapping[str, Any]]) -> None:
    s3.put_object(Bucket=bucket, Key=page_key(run, cursor), Body=json.dumps(list(entries)).encode(),
                  ContentType="application/json")


def read_pages(s3: S3Client, bucket: str, run: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{PREFIX}{run}/users-"):
        keys.extend(item["Key"] for item in page.get("Contents", []))
    for key in sorted(keys):
        entries.extend(json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))
    return entries


def build(entries: Sequence[Mapping[str, Any]], unmanaged: Sequence[Mapping[str, Any]], *, run: str,
          started: datetime, finished: datetime) -> dict[str, Any]:
    servers = {state: 0 for state in SERVER_STATES}
    for entry in entries:
        for state, count in (entry.get("server_counts") or {}).items():
            servers[state] += count
    return {
        "run": run,
        "started": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "finished": finished.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "summary": {
            "users": len(entries),
            "users_compliant": sum(1 for e in entries if e.get("compliant")),
            "users_not_compliant": [e["user"] for e in entries if e.get("compliant") is False],
            "users_with_errors": [e["user"] for e in entries if "error" in e],
            "exempt": [e["user"] for e in entries if e.get("exemption") and not e["exemption"]["expired"]],
            "expired_exemptions": [e["user"] for e in entries if (e.get("exemption") or {}).get("expired")],
            "servers": servers,
            "unmanaged_old_keys": len(unmanaged),
        },
        "users": list(entries),
        "unmanaged_old_keys": list(unmanaged),
    }


def _names(items: Iterable[str], limit: int = 20) -> str:
    listed = list(items)
    shown = ", ".join(listed[:limit])
    return (shown + (f" and {len(listed) - limit} more" if len(listed) > limit else "")) or "none"


def markdown(report: Mapping[str, Any]) -> str:
    s = report["summary"]
    out = [
        f"# Key audit {report['run']}",
        "",
        f"{report['started']} … {report['finished']} (UTC). Read-only: nothing was changed.",
        "",
        f"- users: {s['users']}, compliant {s['users_compliant']}; not compliant: "
        f"{_names(s['users_not_compliant'])}",
        "- servers: " + ", ".join(f"{state} {count}" for state, count in s["servers"].items()),
        f"- exempt: {_names(s['exempt'])}; expired exemptions: {_names(s['expired_exemptions'])}",
        f"- IAM users not managed here with an active key older than the maximum age: "
        f"{s['unmanaged_old_keys']}",
        "",
        "| user | keys (status, age, last used) | AWSCURRENT | servers | compliant |",
        "|---|---|---|---|---|",
    ]
    for entry in report["users"]:
        if "error" in entry:
            out.append(f"| {entry['user']} | {entry['error']} | | | |")
            continue
        keys = "<br>".join(
            f"{k['key_id']} {k['status']}, {k['age_days']} d, "
            f"{(k['last_used'] or 'never')[:10]} {k['last_used_service']}" for k in entry.get("keys", []))
        servers = "<br>".join(f"{instance}: {server['state']}"
                              + (f" ({server['detail']})" if server["state"] != "current" else "")
                              for instance, server in sorted((entry.get("servers") or {}).items()))
        compliant = "yes" if entry.get("compliant") else "**no**"
        if entry.get("exemption"):
            until = entry["exemption"]["until"]
            expired = entry["exemption"]["expired"]
            compliant += f" (exempt until {until}" + (", **expired**)" if expired else ")")
        out.append(f"| {entry['user']} | {keys} | {entry.get('current_key_id') or '—'} | {servers or '—'} | "
                   f"{compliant} |")
    if report["unmanaged_old_keys"]:
        out += ["", "## Unmanaged IAM users with old active keys", "", "| user | key | created | age |",
                "|---|---|---|---|"]
        out += [f"| {u['user']} | {u['key']} | {u['created']} | {u['age_days']} d |"
                for u in report["unmanaged_old_keys"]]
    return "\n".join(out) + "\n"


def notification(report: Mapping[str, Any], location: str) -> tuple[str, str]:
    s = report["summary"]
    drifted = s["servers"]["stale"] + s["servers"]["unknown_key"] + s["servers"]["missing"]
    subject = (f"Key audit: {s['users']} users, {s['users'] - s['users_compliant']} not compliant, "
               f"{drifted} servers drifted")[:100]
    lines = [
        "IAM key-rotation audit (read-only)",
        f"Run: {report['run']}",
        f"Users: {s['users']} (compliant {s['users_compliant']}); "
        f"not compliant: {_names(s['users_not_compliant'])}",
        "Servers: " + ", ".join(f"{state} {count}" for state, count in s["servers"].items()),
        f"Exempt: {_names(s['exempt'])}; expired exemptions: {_names(s['expired_exemptions'])}",
        f"Unmanaged IAM users with old active keys: {s['unmanaged_old_keys']}",
        f"Report: {location}",
    ]
    return subject, "\n".join(lines)

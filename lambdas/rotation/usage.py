"""Whether the old key is still used after the cut-over (GetAccessKeyLastUsed)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from rotation.errors import OldKeyStillInUse

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient


@dataclass(frozen=True)
class LastUse:
    at: datetime | None
    service: str
    region: str


def last_use(iam: IAMClient, key_id: str) -> LastUse:
    info = iam.get_access_key_last_used(AccessKeyId=key_id)["AccessKeyLastUsed"]
    return LastUse(
        at=info.get("LastUsedDate"), service=info.get("ServiceName", "N/A"), region=info.get("Region", "N/A")
    )


def check_unused_since(use: LastUse, key_id: str, cutover_at: datetime, margin_seconds: int) -> None:
    """Raise if the old key was used after every server confirmed the new one.

    Confirmed servers stopped using the old key before `cutover_at`, so their last use is recorded at or
    before it. IAM records only the first use in each 15-minute span, late: a consumer that keeps using the
    key shows up with a date after the cut-over once the next span starts, which is why the machine waits
    `observe_seconds` (>= 15 minutes plus lag) before this check. `margin_seconds` tolerates clock skew and
    requests in flight at the cut-over.
    """
    threshold = cutover_at + timedelta(seconds=margin_seconds)
    if use.at is not None and use.at > threshold:
        raise OldKeyStillInUse(
            f"old key {key_id} was last used at {use.at.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ} "
            f"by service {use.service} in region {use.region}, after the cut-over at "
            f"{cutover_at:%Y-%m-%dT%H:%M:%SZ} (when every server had confirmed the new key); find what "
            f"still uses it (CloudTrail: eventSource {use.service}, this access key id), then run the "
            "rotation again: it resumes and re-checks"
        )

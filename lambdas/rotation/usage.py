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
    """IAM records only the first use in each 15-minute span, late: a use recorded less than the margin
    before the cut-over may hide a use after it, so it counts as "still in use"."""
    threshold = cutover_at - timedelta(seconds=margin_seconds)
    if use.at is not None and use.at >= threshold:
        raise OldKeyStillInUse(
            f"old key {key_id} was last used at {use.at.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ} "
            f"by service {use.service} in region {use.region}, less than {margin_seconds}s before or after "
            "the cut-over at "
            f"{cutover_at:%Y-%m-%dT%H:%M:%SZ}; find what still uses it (CloudTrail: eventSource "
            f"{use.service}, this access key id), then run the rotation again: it resumes and re-checks"
        )

"""Scheduled rotations' execution names hold only what Step Functions allows when it logs to CloudWatch Logs
(`0-9A-Za-z-_`, 1-80 characters), for every character an IAM user name may have, and never collide."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime

import pytest
from rotation import names
from rotation.errors import InvalidSettings
from rotation.names import check_unique_stems, execution_name, execution_stem
from rotation.settings import USER_NAME_PATTERN

WHEN = datetime(2026, 12, 3, 10, 51, 42, tzinfo=UTC)
# Every character IAM allows in a user name ([\w+=,.@-], ASCII).
IAM_CHARACTERS = "".join(c for c in map(chr, range(128)) if re.fullmatch(r"[A-Za-z0-9_+=,.@-]", c))
STEP_FUNCTIONS_NAME = re.compile(r"^[0-9A-Za-z_-]{1,80}$")


def _users() -> list[str]:
    specials = "+=,.@-_"
    users = [IAM_CHARACTERS[:64], IAM_CHARACTERS[-64:], "a" * 64, "a" * 63 + "b", "svc.web@corp.example",
             "svc+web", "svc=web", "svc,web", "svc_web", "svc-web", "x", "X"]
    users += [f"u{a}{b}" for a, b in itertools.product(specials, repeat=2)]
    users += ["@" * n for n in range(1, 65)]
    return users


def test_every_iam_user_name_character_gives_an_allowed_name_of_at_most_80() -> None:
    assert len(IAM_CHARACTERS) == 62 + 7
    for user in _users():
        assert re.fullmatch(USER_NAME_PATTERN, user), user  # (each is a valid IAM user name)
        name = execution_name(user, WHEN)
        assert STEP_FUNCTIONS_NAME.match(name), (user, name)


def test_names_read_as_the_user_and_the_runs_utc_day() -> None:
    assert re.fullmatch(r"svc_web_corp_example-[0-9a-f]{8}-20261203",
                        execution_name("svc.web@corp.example", WHEN))
    assert execution_name("svc-web", WHEN).startswith("svc-web-")


def test_names_are_deterministic_and_distinct_for_distinct_users() -> None:
    users = _users()
    assert [execution_name(u, WHEN) for u in users] == [execution_name(u, WHEN) for u in users]
    # users whose safe forms are equal (svc.web, svc@web, svc_web) or truncated alike (64 characters) differ
    assert len({execution_stem(u) for u in users}) == len(set(users))
    # one name a day: two runs of one day start one rotation of a user, the next day's run another
    assert execution_name("svc-web", WHEN) == execution_name("svc-web", WHEN.replace(hour=23, minute=59))
    assert execution_name("svc-web", WHEN) != execution_name("svc-web", WHEN.replace(day=4))


def test_settings_with_two_users_of_one_stem_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a stem function that loses information (the hash is what keeps real stems apart)
    monkeypatch.setattr(names, "execution_stem", lambda user: user.lower().replace(".", "_"))
    # WHEN two users map to one stem THEN the settings are refused, naming both
    with pytest.raises(InvalidSettings, match=r"users: users 'svc\.web' and 'svc_web' would get the same"):
        check_unique_stems(["svc.web", "other", "svc_web"], "users")
    check_unique_stems(["svc.web", "other"], "users")

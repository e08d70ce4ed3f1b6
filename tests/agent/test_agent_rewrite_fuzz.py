"""The profile rewrite, in process, on thousands of generated credentials files: whenever botocore can parse
the file, the rewrite succeeds, botocore then sees the new key in the profile and nothing else changed, and
every line outside the profile is kept verbatim and in order."""

from __future__ import annotations

import random

from keyrotation import credentials as agent

NEW_ID = "AKIANEWNEWNEWNEWNEW0"
NEW_SECRET = "NewSecret/abcdefghijklmnop+0123456789ABC"


def generate(rng: random.Random) -> str:
    eol = rng.choice(["\n", "\r\n"])
    sections = rng.sample(["app", "other", "profile app", "default", "x y", "App"], rng.randint(0, 4))
    lines: list[str] = []
    if rng.random() < 0.3:
        lines.append(rng.choice(["# top comment", "; top", ""]))
    keys = ["aws_access_key_id", "aws_secret_access_key", "aws_session_token", "region", "AWS_Access_Key_Id"]
    for section in sections:
        indent = rng.choice(["", "", "", "  ", "\t"])
        lines.append(f"{indent}[{section}]")
        for key in rng.sample(keys, rng.randint(0, len(keys))):
            sep = rng.choice([" = ", "=", ": ", " =", "   =   "])
            lines.append(f"{indent}{key}{sep}{rng.choice(['AKIAOLD0', 'v', 'old value # c', ''])}")
            if rng.random() < 0.2:
                lines.append(indent + "    continued")
                if rng.random() < 0.5:
                    lines.append(rng.choice(["", "# inside"]))
                    lines.append(indent + "    more")
            if rng.random() < 0.2:
                lines.append(rng.choice(["", "# between", "; note é 日本"]))
        if rng.random() < 0.4:
            lines.append("")
    text = eol.join(lines)
    if lines and rng.random() < 0.7:
        text += eol
    return text


def test_rewrite_keeps_everything_but_the_profile_keys() -> None:
    rng = random.Random(99)
    parsed_ok = 0
    for _ in range(3000):
        old = generate(rng)
        try:
            before = agent.parse_credentials(old)
        except Exception:  # noqa: BLE001, S112 - botocore rejects it too: the agent refuses those (tested elsewhere)
            continue
        parsed_ok += 1
        new = agent.rewrite_profile(old, "app", NEW_ID, NEW_SECRET)
        agent.check_rewrite(old, new, "app", NEW_ID, NEW_SECRET)  # raises if anything else would change
        after = agent.parse_credentials(new)
        assert after["app"]["aws_access_key_id"] == NEW_ID, (old, new)
        assert {k: v for k, v in after.items() if k != "app"} == {
            k: v for k, v in before.items() if k != "app"
        }
        # textually: the lines of other sections survive verbatim and in order (line endings aside)
        kinds = agent.classify_lines(agent.split_lines(old))
        kept = [
            line.rstrip("\r\n")
            for line, (_kind, section, _start) in zip(agent.split_lines(old), kinds, strict=True)
            if section != "app"
        ]
        new_lines = iter(line.rstrip("\r\n") for line in agent.split_lines(new))
        assert all(any(line == candidate for candidate in new_lines) for line in kept), (old, new)
        # the final newline (or its absence) is preserved, unless the last line was the profile's to drop
        if kinds and kinds[-1][1] != "app":
            assert new.endswith("\n") == old.endswith("\n"), (old, new)
    assert parsed_ok > 1000

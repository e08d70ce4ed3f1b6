"""The credentials file as text: parse it as the AWS SDKs do and rewrite one profile's key lines,
leaving every other byte as it was. Pure functions."""

import configparser
import io
import re
from typing import Dict, List, Optional, Tuple

from .base import KEY_ID, SECRET_KEY, SESSION_TOKEN, AgentError

# configparser's own header and option expressions (RawConfigParser._SECT_TMPL / _OPT_TMPL): botocore
# parses credentials files with RawConfigParser, so this is what every SDK and the CLI will see.
SECTION_RE = re.compile(r"\[(?P<header>.+)\]")
OPTION_RE = re.compile(r"(?P<option>.*?)\s*(?P<vi>[=:])\s*(?P<value>.*)$")
NONSPACE_RE = re.compile(r"\S")


def parse_credentials(text: str) -> Dict[str, Dict[str, str]]:
    """Parse like botocore (strict RawConfigParser, universal newlines); raises configparser.Error."""
    parser = configparser.RawConfigParser()
    parser.read_file(io.StringIO(text, newline=None), source="credentials")
    return {section: dict(parser.items(section, raw=True)) for section in parser.sections()}


def split_lines(text: str) -> List[str]:
    """Lines with their own endings; the last one may have none."""
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def line_ending(line: str) -> str:
    if line.endswith("\r\n"):
        return "\r\n"
    if line.endswith("\n"):
        return "\n"
    return ""


def classify_lines(lines: List[str]) -> List[Tuple[str, Optional[str], Optional[int]]]:
    """Per line: (kind, section, option line index), following configparser's reading loop.

    kind is blank, comment, section, option or continuation; for option/continuation lines the index is the
    line where the option starts (a value may continue over indented lines, even past blanks and comments).
    """
    result = []  # type: List[Tuple[str, Optional[str], Optional[int]]]
    section = None  # type: Optional[str]
    option_line = None  # type: Optional[int]
    indent_level = 0
    for index, raw in enumerate(lines):
        line = raw[: -len(line_ending(raw))] if line_ending(raw) else raw
        stripped = line.strip()
        if stripped.startswith(("#", ";")):
            result.append(("comment", section, option_line))
            continue
        if not stripped:
            result.append(("blank", section, option_line))
            continue
        first = NONSPACE_RE.search(line)
        indent = first.start() if first else 0
        if section is not None and option_line is not None and indent > indent_level:
            result.append(("continuation", section, option_line))
            continue
        indent_level = indent
        header = SECTION_RE.match(stripped)
        if header:
            section = header.group("header")
            option_line = None
            result.append(("section", section, None))
        else:
            option_line = index
            result.append(("option", section, index))
    return result


def option_name(line: str) -> str:
    match = OPTION_RE.match(line.strip())
    return match.group("option").rstrip().lower() if match else ""


def replace_value(line: str, value: str) -> str:
    """Keep the line's key, separator and spacing; replace the value; keep the line ending."""
    eol = line_ending(line)
    body = line[: -len(eol)] if eol else line
    match = re.match(r"\s*[^=:]*?\s*[=:][ \t]*", body)
    prefix = match.group(0) if match else body
    return prefix + value + eol


def rewrite_profile(text: str, profile: str, key_id: str, secret: str) -> str:
    """``text`` with only ``[profile]``'s key id and secret key replaced (session token dropped)."""
    lines = split_lines(text)
    eol = next((line_ending(line) for line in lines if line_ending(line)), "\n")
    kinds = classify_lines(lines)
    wanted = {KEY_ID: key_id, SECRET_KEY: secret}
    header_index = next((i for i, k in enumerate(kinds) if k[0] == "section" and k[1] == profile), None)

    if header_index is None:
        block = ["[" + profile + "]" + eol, KEY_ID + " = " + key_id + eol, SECRET_KEY + " = " + secret + eol]
        if not lines:
            return "".join(block)
        out = list(lines)
        ends_without_newline = not line_ending(out[-1])
        if ends_without_newline:
            out[-1] += eol
            block[-1] = block[-1][: -len(eol)]
        return "".join(out) + eol + "".join(block)

    out = list(lines)
    drop = set()  # line indexes removed
    last_in_section = header_index
    found = set()
    for index, (kind, section, start) in enumerate(kinds):
        if section != profile or index <= header_index or kind == "section":
            continue
        if kind in ("option", "continuation"):
            last_in_section = index
        if kind == "blank" or kind == "comment":
            continue
        name = option_name(lines[start]) if start is not None else ""
        if name not in (KEY_ID, SECRET_KEY, SESSION_TOKEN):
            continue
        if kind == "option":
            if name == SESSION_TOKEN:
                drop.add(index)
            else:
                out[index] = replace_value(lines[index], wanted[name])
                found.add(name)
        elif start is not None:  # a continuation of one of our options: it goes, with blanks/comments inside
            drop.update(range(start + 1, index + 1))
    # The option's extent may end without newline at EOF; a replaced option line keeps its own ending.
    if any(line_ending(lines[i]) == "" for i in drop) and drop:
        keep = [i for i in range(len(lines)) if i not in drop]
        if keep and line_ending(out[keep[-1]]):
            out[keep[-1]] = out[keep[-1]][: -len(line_ending(out[keep[-1]]))]
    missing = [name for name in (KEY_ID, SECRET_KEY) if name not in found]
    if missing:
        insert_at = last_in_section
        while insert_at in drop:
            insert_at -= 1
        # configparser reads a line indented deeper than the current option as its continuation. So our
        # lines take the indentation of the option in effect (they must not continue it); right after the
        # header, that of the next line that counts (which must not continue ours).
        in_effect = kinds[insert_at][2]
        if in_effect is not None:
            reference = lines[in_effect]
        else:
            following = [
                lines[i]
                for i in range(insert_at + 1, len(lines))
                if i not in drop and kinds[i][0] not in ("blank", "comment")
            ]
            reference = following[0] if following else lines[header_index]
        indent = reference[: len(reference) - len(reference.lstrip(" \t"))]
        added = [indent + name + " = " + wanted[name] + eol for name in missing]
        if not line_ending(out[insert_at]):
            out[insert_at] += eol
            added[-1] = added[-1][: -len(eol)]
        out[insert_at] = out[insert_at] + "".join(added)
    return "".join(line for i, line in enumerate(out) if i not in drop)


def decode_credentials(data: bytes, shown: str) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise AgentError("unparseable_file", "%s is not UTF-8; the AWS SDKs cannot read it" % shown) from None
    if re.search(r"\r(?!\n)", text):
        raise AgentError("unsupported_file", "%s has bare carriage returns (old Mac line endings)" % shown)
    try:
        parse_credentials(text)
    except configparser.Error as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise AgentError(
            "unparseable_file",
            "%s cannot be parsed by the AWS SDKs (%s: %s); fix it by hand, nothing was changed"
            % (shown, type(exc).__name__, first[:200]),
        ) from None
    return text


def check_rewrite(old: str, new: str, profile: str, key_id: str, secret: str) -> None:
    """What the SDKs will read from ``new`` differs from ``old`` only in the profile's keys."""
    before = parse_credentials(old) if old else {}
    try:
        after = parse_credentials(new)
    except configparser.Error as exc:
        raise AgentError(
            "unsupported_file", "the rewritten file would not parse (%s)" % type(exc).__name__
        ) from None
    expected = dict(before)
    section = {k: v for k, v in before.get(profile, {}).items() if k != SESSION_TOKEN}
    section.update({KEY_ID: key_id, SECRET_KEY: secret})
    expected[profile] = section
    if after != expected:
        raise AgentError(
            "unsupported_file",
            "cannot rewrite profile %s without changing other settings (e.g. a [DEFAULT] section)" % profile,
        )

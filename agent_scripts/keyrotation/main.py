"""The agent's entry point and its result line (one line on stdout, scrubbed and at most
RESULT_LINE_LIMIT characters; keyrotation.contract)."""

import json
import sys
from typing import Any, Dict, List, Optional

from .actions import audit, rotate, verify
from .base import AgentError
from .contract import EXIT_CODES, RESULT_LINE_LIMIT, format_result
from .parameters import read_parameters, validate_parameters
from .paths import refuse_ssm_agent_file

# Free-text fields of the result line that may be shortened to keep it within RESULT_LINE_LIMIT.
SHORTENABLE = ("message", "file", "backup", "caller_arn", "hook")


def shorten(value: str, size: int) -> str:
    """``value`` in at most ``size`` characters: its head and tail around "..." (paths, ARNs, messages)."""
    if len(value) <= size:
        return value
    head = (size - 3) // 2
    return value[:head] + "..." + value[len(value) - (size - 3 - head) :]


def result_line(result: Dict[str, Any], secrets: List[str]) -> str:
    """The result line, scrubbed of every secret and at most RESULT_LINE_LIMIT characters.

    ListCommandInvocations keeps 2,500 characters of stdout and stderr together; when both are long, the SSM
    Agent keeps only the first ~1,200 of stdout (docs/agent.md, "The result line"). Our stdout is this one
    line, so at 1,000 characters it always survives whole, whatever the hook or the diagnostics wrote.
    """

    def scrub(text: str) -> str:
        for secret in secrets:  # belt and braces: the secret must never reach command output
            if secret:
                text = text.replace(secret, "***")
        return text

    # Scrub the values before shortening them: a secret cut in half would no longer be recognised.
    shown = {key: scrub(value) if isinstance(value, str) else value for key, value in result.items()}
    while True:
        line = scrub(format_result(shown))
        if len(line) <= RESULT_LINE_LIMIT:
            return line
        # Halve the longest free-text field; status, error, action, profile and the key id are bounded.
        longest = max(
            (key for key in SHORTENABLE if isinstance(shown.get(key), str) and len(shown[key]) > 16),
            key=lambda key: len(json.dumps(shown[key], ensure_ascii=True)),
            default=None,
        )
        if longest is None:  # cannot happen with bounded fields; never print an over-long line
            return line[:RESULT_LINE_LIMIT]
        shown[longest] = shorten(shown[longest], len(shown[longest]) // 2)


def emit(result: Dict[str, Any], secrets: List[str]) -> None:
    sys.stdout.write(result_line(result, secrets) + "\n")
    sys.stdout.flush()


def main(argv: Optional[List[str]] = None) -> int:
    result = {
        "status": "error",
        "action": None,
        "profile": None,
        "file": None,
        "access_key_id": None,
        "caller_arn": None,
    }  # type: Dict[str, Any]
    secrets = []  # type: List[str]
    try:
        params = read_parameters(sys.argv[1:] if argv is None else argv)
        validate_parameters(params)  # before any value is echoed in the result line
        result.update(action=params["Action"], profile=params["Profile"], file=params["CredentialsFile"])
        refuse_ssm_agent_file(params["CredentialsFile"])
        if params["Action"] == "rotate":
            rotate(params, result, secrets)
        elif params["Action"] == "audit":
            audit(params, result)
        else:
            verify(params, result)
        result["status"] = "ok"
        emit(result, secrets)
        return 0
    except AgentError as exc:
        result.update(status="error", error=exc.code, message=exc.message[:1000])
        emit(result, secrets)
        return EXIT_CODES.get(exc.code, 1)
    except Exception as exc:  # noqa: BLE001 - the result line must be printed whatever happens
        result.update(status="error", error="internal", message=("%s: %s" % (type(exc).__name__, exc))[:1000])
        emit(result, secrets)
        return EXIT_CODES["internal"]

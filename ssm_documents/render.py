"""Render the Run Command document: the YAML in this directory with the on-server agent inlined.

The deployed document must be self-contained (nothing is pre-installed on servers), so the agent's source is
embedded as zlib-compressed base64 in place of ``AGENT_PLACEHOLDER`` in every step. Both steps unpack it to a
private temporary directory and run it with the server's Python 3.6+ (the newest one the Linux step finds,
RHEL 8's ``/usr/libexec/platform-python`` included).

Used by the CDK app (``render_document()`` is the ``Content`` of the ``AWS::SSM::Document``), the sandbox and
the tests.
"""

from __future__ import annotations

import base64
import copy
import zlib
from pathlib import Path
from typing import Any

import yaml

DOCUMENT_PATH = Path(__file__).resolve().with_name("rotate-access-key.yaml")
AGENT_PATH = Path(__file__).resolve().parent.parent / "agent_scripts" / "keyrotation_agent.py"
AGENT_PLACEHOLDER = "__KEYROTATION_AGENT_B64__"
# SSM's limit for a document's content; the rendered JSON must stay below it.
MAX_DOCUMENT_BYTES = 64 * 1024


def load_template() -> dict[str, Any]:
    """The document exactly as written in the YAML (agent not inlined)."""
    with DOCUMENT_PATH.open(encoding="utf-8") as handle:
        document: dict[str, Any] = yaml.safe_load(handle)
    return document


def agent_source() -> bytes:
    return AGENT_PATH.read_bytes()


def agent_payload() -> str:
    """The agent as it is embedded: zlib (level 9) then base64, one line without quotes or spaces."""
    return base64.b64encode(zlib.compress(agent_source(), 9)).decode("ascii")


def render_document() -> dict[str, Any]:
    """The final document content (a dict ready for ``json.dumps`` / ``AWS::SSM::Document.Content``)."""
    document = load_template()
    payload = agent_payload()
    replaced = 0
    for step in document["mainSteps"]:
        lines = step["inputs"]["runCommand"]
        for index, line in enumerate(lines):
            if AGENT_PLACEHOLDER in line:
                lines[index] = line.replace(AGENT_PLACEHOLDER, payload)
                replaced += 1
    if replaced != len(document["mainSteps"]):
        raise ValueError(f"expected one agent placeholder per step in {DOCUMENT_PATH.name}, found {replaced}")
    return document


def document_parameters() -> dict[str, Any]:
    """The document's ``parameters`` block: name -> {type, allowedPattern, default, ...}."""
    return copy.deepcopy(load_template()["parameters"])


def step_script(document: dict[str, Any], action: str) -> str:
    """The script of the step that runs ``action`` (``aws:runShellScript`` / ``aws:runPowerShellScript``)."""
    for step in document["mainSteps"]:
        if step["action"] == action:
            return "\n".join(step["inputs"]["runCommand"]) + "\n"
    raise KeyError(action)

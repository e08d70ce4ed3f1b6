"""Render the Run Command document: the YAML in this directory, completed from agent_scripts/.

The deployed document must be self-contained (nothing is pre-installed on servers). The YAML holds what is
the document's own (schema, description, steps and their preconditions); everything shared with the agent or
the engine comes from ``agent_scripts/``:

- ``parameters:`` and the description's inputs table are generated from ``keyrotation.contract.PARAMETERS``;
- each step's ``runCommand`` is a launcher file (``launch-linux.sh`` for ``sh``; ``launch-windows.ps1``, which
  only reports that Windows is not supported yet),
  one line per element, with its ``@…@`` placeholders filled in: the payload, the unpacker, the Python
  version check, the agent's arguments (one ``--flag=$SSM_<Name>`` per parameter) and the launcher's own
  failure lines and exit codes (``keyrotation.contract.LAUNCHER_FAILURES``);
- the payload is one zip of the agent's entry script and its package (``keyrotation/``), zlib-compressed,
  base64 on one line; the Linux launcher unpacks it into a private temporary directory and runs the agent
  with the server's Python 3.6+.

Used by the CDK app (``render_document()`` is the ``Content`` of the ``AWS::SSM::Document``), the sandbox and
the tests.
"""

from __future__ import annotations

import base64
import io
import re
import zipfile
import zlib
from pathlib import Path
from typing import Any

import yaml
from keyrotation import contract

DOCUMENT_PATH = Path(__file__).resolve().with_name("rotate-access-key.yaml")
AGENT_DIR = Path(__file__).resolve().parent.parent / "agent_scripts"
AGENT_PATH = AGENT_DIR / "keyrotation_agent.py"
# What the servers receive: the agent's entry script and its package (payload_files).
ENTRY_SCRIPT = "keyrotation_agent.py"
PACKAGE = "keyrotation"

# SSM's limit for a document's content; the rendered JSON must stay below it.
MAX_DOCUMENT_BYTES = 64 * 1024
# Unpacks the payload file argv[1] into the directory argv[2]. Python 3.6's standard library, and no quote
# characters (so that a PowerShell launcher could pass it too: PowerShell 5 mangles quotes in arguments).
UNPACKER = (
    "import base64, io, pathlib, sys, zipfile, zlib; zipfile.ZipFile(io.BytesIO(zlib.decompress("
    "base64.b64decode(pathlib.Path(sys.argv[1]).read_bytes())))).extractall(sys.argv[2])"
)
PYTHON_CHECK = f"import sys; sys.exit(sys.version_info < {contract.MIN_PYTHON!r})"
PLACEHOLDER = re.compile(r"@([A-Z_]+)(?::([a-z_]+))?@")
LAUNCHER = re.compile(r"^@LAUNCHER ([a-z-]+\.(?:sh|ps1))@$")
SHELLS = {"aws:runShellScript": "sh", "aws:runPowerShellScript": "powershell"}


def load_template() -> dict[str, Any]:
    """The document exactly as written in the YAML (placeholders not filled in)."""
    with DOCUMENT_PATH.open(encoding="utf-8") as handle:
        document: dict[str, Any] = yaml.safe_load(handle)
    return document


def payload_files() -> list[str]:
    """The payload's files, relative to agent_scripts/: the entry script, then the package's modules."""
    return [ENTRY_SCRIPT] + sorted(f"{PACKAGE}/{p.name}" for p in (AGENT_DIR / PACKAGE).glob("*.py"))


def payload_zip() -> bytes:
    """The agent and its package as one zip (stored: the whole is compressed once, across files), with
    fixed dates and modes, so that the same sources give the same document (CloudFormation sees no change)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in payload_files():
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.create_system = 3  # Unix: external_attr holds the mode
            info.external_attr = 0o600 << 16
            archive.writestr(info, (AGENT_DIR / name).read_bytes())
    return buffer.getvalue()


def agent_payload() -> str:
    """The payload as it is embedded: the zip, zlib-compressed (level 9), base64, one line without quotes or
    spaces. (Each step carries its own copy, so every byte here counts twice against MAX_DOCUMENT_BYTES.)"""
    return base64.b64encode(zlib.compress(payload_zip(), 9)).decode("ascii")


def document_parameters() -> dict[str, Any]:
    """The document's ``parameters`` block, from the contract: name -> {type, description, default, ...}."""
    block: dict[str, Any] = {}
    for parameter in contract.PARAMETERS:
        spec: dict[str, Any] = {"type": "String", "description": parameter.description}
        if parameter.default is not None:
            spec["default"] = parameter.default
        spec["allowedPattern"] = parameter.pattern
        spec["interpolationType"] = "ENV_VAR"  # values reach the scripts only as SSM_<Name> variables
        block[parameter.name] = spec
    return block


def inputs_table() -> str:
    rows = ["| Parameter | Meaning |", "|---|---|"]
    rows += [f"| `{p.name}` | {p.description} |" for p in contract.PARAMETERS]
    return "\n".join(rows)


def agent_arguments(shell: str) -> str:
    """The agent's arguments in the launcher: one quoted ``--flag=<SSM_Name variable>`` per parameter."""
    if shell != "sh":  # the PowerShell launcher runs no agent (Windows is not supported yet)
        raise ValueError(f"no agent arguments for {shell}")
    return " ".join(f'{p.flag}="${{SSM_{p.name}-}}"' for p in contract.PARAMETERS)


def launcher_lines(name: str, shell: str, payload: str) -> list[str]:
    """A launcher file of agent_scripts/, its placeholders filled in, one element per line."""
    text = (AGENT_DIR / name).read_text(encoding="utf-8")

    def fill(match: re.Match[str]) -> str:
        key, failure = match.group(1), match.group(2)
        if key == "RESULT" and failure:
            line = contract.launcher_line(failure)
            if "'" in line:  # the launchers print it from a single-quoted string
                raise ValueError(f"launcher failure {failure!r} may not contain a single quote")
            return line
        if key == "EXIT" and failure:
            return str(contract.EXIT_CODES[contract.LAUNCHER_FAILURES[failure][0]])
        simple = {"PAYLOAD": payload, "UNPACKER": UNPACKER, "PYTHON_CHECK": PYTHON_CHECK,
                  "AGENT_ARGUMENTS": agent_arguments(shell)}
        if failure or key not in simple:
            raise ValueError(f"unknown placeholder {match.group(0)} in agent_scripts/{name}")
        return simple[key]

    return [PLACEHOLDER.sub(fill, line) for line in text.splitlines()]


def render_document() -> dict[str, Any]:
    """The final document content (a dict ready for ``json.dumps`` / ``AWS::SSM::Document.Content``)."""
    document = load_template()
    if document.get("parameters") != "@PARAMETERS@":
        raise ValueError(f"{DOCUMENT_PATH.name}: parameters come from the contract; write '@PARAMETERS@'")
    document["parameters"] = document_parameters()
    document["description"] = (
        document["description"]
        .replace("@INPUTS_TABLE@", inputs_table())
        .replace("@RESULT_MARKER@", contract.RESULT_MARKER)
    )
    payload = agent_payload()
    for step in document["mainSteps"]:
        match = LAUNCHER.match(str(step["inputs"].get("runCommand", "")))
        if match is None or step["action"] not in SHELLS:
            raise ValueError(f"{DOCUMENT_PATH.name}: step {step.get('name')} must run '@LAUNCHER <file>@'")
        step["inputs"]["runCommand"] = launcher_lines(match.group(1), SHELLS[step["action"]], payload)
    leftover = PLACEHOLDER.search(str(document["description"]))
    if leftover:
        raise ValueError(f"unknown placeholder {leftover.group(0)} in {DOCUMENT_PATH.name}")
    return document


def step_script(document: dict[str, Any], action: str) -> str:
    """The script of the step that runs ``action`` (``aws:runShellScript`` / ``aws:runPowerShellScript``)."""
    for step in document["mainSteps"]:
        if step["action"] == action:
            return "\n".join(step["inputs"]["runCommand"]) + "\n"
    raise KeyError(action)


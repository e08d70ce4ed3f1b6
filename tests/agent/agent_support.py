"""Helpers for running the on-server agent as a subprocess on simulated servers (temp dirs) against moto.

Each test gets a server root (`KEYROTATION_ROOT`, docs/design.md §6) with its own `/etc/passwd` (user `app`,
uid 1000) and `/home/app` owned by app, and an IAM user whose key is in a Secrets Manager secret.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import botocore.session
from keyrotation import contract

from ssm_documents.render import step_script

REPO = Path(__file__).resolve().parents[2]
AGENT = REPO / "agent_scripts" / "keyrotation_agent.py"
PAUSE_DIR = Path(__file__).resolve().parent / "pause"  # sitecustomize.py: the pause at each write step
VENV_BIN = Path(sys.executable).parent
REGION = "us-east-1"
APP_UID = 1000
APP_GID = 1000
PARAM_FLAGS = {parameter.name: parameter.flag for parameter in contract.PARAMETERS}


def running_moto() -> Iterator[str]:
    """A moto server on 127.0.0.1 (free port) for as long as the generator is not closed: its URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def _client(service: str, url: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@dataclass
class Identity:
    """An IAM user with an access key stored in a secret (the secret's AWSCURRENT)."""

    url: str
    user: str
    secret_id: str
    key_id: str
    secret_key: str

    def rotate_secret(self) -> None:
        """A newer key in AWSCURRENT (as the engine's promote step leaves it)."""
        key = _client("iam", self.url).create_access_key(UserName=self.user)["AccessKey"]
        self.key_id, self.secret_key = key["AccessKeyId"], key["SecretAccessKey"]
        _client("secretsmanager", self.url).put_secret_value(
            SecretId=self.secret_id,
            SecretString=json.dumps(
                {"aws_access_key_id": self.key_id, "aws_secret_access_key": self.secret_key}
            ),
        )

    def put_raw(self, value: str) -> None:
        _client("secretsmanager", self.url).put_secret_value(SecretId=self.secret_id, SecretString=value)


def make_identity(url: str) -> Identity:
    user = "svc-" + uuid.uuid4().hex[:10]
    _client("iam", url).create_user(UserName=user, Path="/keyrotation/")
    key = _client("iam", url).create_access_key(UserName=user)["AccessKey"]
    arn = _client("secretsmanager", url).create_secret(
        Name="keyrotation/" + user,
        SecretString=json.dumps(
            {
                "aws_access_key_id": key["AccessKeyId"],
                "aws_secret_access_key": key["SecretAccessKey"],
                "user": user,
            }
        ),
    )["ARN"]
    return Identity(url, user, arn, key["AccessKeyId"], key["SecretAccessKey"])


@dataclass
class Result:
    code: int
    result: dict[str, Any]
    stdout: str
    stderr: str


@dataclass
class Server:
    """A simulated server: a directory standing for `/`, with the app user's home and an agent runner."""

    root: Path
    moto_url: str
    env: dict[str, str] = field(default_factory=dict)

    def path(self, logical: str) -> Path:
        return self.root / logical.lstrip("/")

    def params(self, identity: Identity, **overrides: str) -> dict[str, str]:
        params = {
            "SecretId": identity.secret_id,
            "CredentialsFile": "/home/app/.aws/credentials",
            "Profile": "app",
            "FileOwner": "app",
            "ExpectedAccessKeyId": identity.key_id,
            "ReloadHook": "",
            "Action": "rotate",
        }
        params.update(overrides)
        return params

    def base_env(self) -> dict[str, str]:
        env = {
            "PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "HOME": str(self.path("/root")),
            "AWS_ENDPOINT_URL": self.moto_url,
            "AWS_ACCESS_KEY_ID": "testing",  # the server's own credentials (moto accepts anything)
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
            "KEYROTATION_ROOT": str(self.root),
            "KEYROTATION_VERIFY_TIMEOUT": "30",
            "KEYROTATION_VERIFY_INTERVAL": "0.2",
            "KEYROTATION_LOCK_TIMEOUT": "20",
        }
        env.update(self.env)
        return env

    def start(
        self,
        params: dict[str, str],
        *,
        via: str = "env",
        env: dict[str, str] | None = None,
        python: str | None = None,
        umask: int = 0o077,  # as under the document's step
    ) -> subprocess.Popen[str]:
        """Start the agent: parameters as SSM_* variables (as Run Command passes them) or as flags.

        The interpreter is ``python``, else $KEYROTATION_TEST_AGENT_PYTHON (to run every agent test on, say,
        Python 3.6: docs/agent.md), else the tests' own."""
        full_env = self.base_env()
        full_env.update(env or {})
        argv = [python or os.environ.get("KEYROTATION_TEST_AGENT_PYTHON") or sys.executable, str(AGENT)]
        if via == "env":
            full_env.update({f"SSM_{name}": value for name, value in params.items()})
        else:
            argv += [f"{PARAM_FLAGS[name]}={value}" for name, value in params.items()]
        return subprocess.Popen(
            argv, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, umask=umask
        )

    def run(self, params: dict[str, str], **kwargs: Any) -> Result:
        proc = self.start(params, **kwargs)
        stdout, stderr = proc.communicate(timeout=120)
        return Result(proc.returncode, parse_single_result(stdout, stderr), stdout, stderr)


def pause_env(seconds: float) -> dict[str, str]:
    """The environment under which the agent pauses `seconds` at each write step, announcing it on stderr as
    `test pause: <step>` (pause/sitecustomize.py, imported by Python's `site` from PYTHONPATH)."""
    return {"PYTHONPATH": str(PAUSE_DIR), "KEYROTATION_TEST_PAUSE_SECONDS": str(seconds)}


def parse_single_result(stdout: str, stderr: str = "") -> dict[str, Any]:
    """stdout must be exactly one `KEYROTATION_RESULT {json}` line."""
    lines = stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith(contract.RESULT_MARKER + " "), (
        f"stdout={stdout!r} stderr={stderr[-2000:]}"
    )
    data = contract.parse_result(lines[0])
    assert data is not None, lines[0]
    return data


def make_server(root: Path, moto_url: str) -> Server:
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)  # a server's `/`: the agent reads the file as its owner, from here down
    for logical in ("/etc", "/home", "/root"):
        (root / logical.lstrip("/")).mkdir(parents=True, exist_ok=True)
    (root / "etc/passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nweb:x:1001:1001::/home/web:/bin/sh\n"
    )
    home = root / "home/app"
    home.mkdir(mode=0o750)
    os.chown(home, APP_UID, APP_GID)
    return Server(root=root, moto_url=moto_url)


def snapshot(root: Path) -> dict[str, tuple[int, int, int, bytes | str]]:
    """Every entry under root: mode, uid, gid and content (or link target)."""
    state: dict[str, tuple[int, int, int, bytes | str]] = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        if path.is_symlink():
            content: bytes | str = str(path.readlink())
        elif path.is_file():
            content = path.read_bytes()
        else:
            content = b""
        state[str(path.relative_to(root))] = (st.st_mode, st.st_uid, st.st_gid, content)
    return state


def write_credentials(server: Server, content: bytes, logical: str = "/home/app/.aws/credentials") -> Path:
    path = server.path(logical)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    os.chown(path.parent, APP_UID, APP_GID)
    path.write_bytes(content)
    os.chown(path, APP_UID, APP_GID)
    path.chmod(0o600)
    return path


class FakeSts:
    """An STS endpoint that rejects the first `failures` requests like IAM does for a key that has not
    propagated yet (InvalidClientTokenId), then answers GetCallerIdentity."""

    ARN = "arn:aws:iam::123456789012:user/keyrotation/fake"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.requests = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.requests += 1
                if outer.requests <= outer.failures:
                    body = (
                        b'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error>'
                        b"<Type>Sender</Type><Code>InvalidClientTokenId</Code>"
                        b"<Message>The security token included in the request is invalid.</Message>"
                        b"</Error><RequestId>1</RequestId></ErrorResponse>"
                    )
                    self.send_response(403)
                else:
                    body = (
                        '<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
                        f"<GetCallerIdentityResult><Arn>{outer.ARN}</Arn><UserId>AIDAFAKE</UserId>"
                        "<Account>123456789012</Account></GetCallerIdentityResult>"
                        "<ResponseMetadata><RequestId>2</RequestId></ResponseMetadata>"
                        "</GetCallerIdentityResponse>"
                    ).encode()
                    self.send_response(200)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def run_linux_step(
    document: dict[str, Any], workdir: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """What the SSM Agent does: the step's lines in _script.sh, run by `sh` with SSM_* variables."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "_script.sh").write_text(step_script(document, "aws:runShellScript"))
    return subprocess.run(
        ["/bin/sh", "_script.sh"], cwd=workdir, env=env, capture_output=True, text=True, timeout=120
    )


def ssm_env(server: Server, params: dict[str, str]) -> dict[str, str]:
    env = server.base_env()
    env.update({f"SSM_{name}": value for name, value in params.items()})
    return env


def shell_injections(prefix: str, canary: object) -> list[str]:
    """`prefix` followed by the usual ways to make a shell run `touch <canary>` (shared with tests/safety)."""
    return [
        f"{prefix}; touch {canary}",
        f"{prefix}$(touch {canary})",
        f"{prefix}`touch {canary}`",
        f"{prefix}' ; touch {canary} ; '",
        f'{prefix}" ; touch {canary} ; "',
        f"{prefix}\ntouch {canary}",
        f"{prefix} && touch {canary}",
        f"{prefix}|touch {canary}",
    ]


def botocore_keys(path: Path, profile: str) -> tuple[str, str]:
    """The (key id, secret) botocore itself reads from `profile` of the credentials file `path`."""
    session = botocore.session.Session(profile=profile)
    session.set_config_variable("credentials_file", str(path))
    session.set_config_variable("config_file", os.devnull)
    creds = session.get_credentials()
    assert creds is not None
    return creds.access_key, creds.secret_key


@contextlib.contextmanager
def fresh_agent_modules() -> Iterator[None]:
    """Inside the block, the agent's package is imported anew (e.g. as on another platform); afterwards the
    process has exactly the agent modules it had before, so other tests never see that copy."""

    def ours() -> list[str]:
        return [name for name in sys.modules if name == "keyrotation" or name.startswith("keyrotation.")]

    saved = {name: sys.modules.pop(name) for name in ours()}
    try:
        yield
    finally:
        for name in ours():
            del sys.modules[name]
        sys.modules.update(saved)

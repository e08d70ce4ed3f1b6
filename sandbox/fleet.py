"""Simulated SSM hybrid nodes (`mi-…`) and the SSM Agent that runs Run Command documents on them.

Each server owns a directory that stands for its filesystem root: the agent script gets it
as `KEYROTATION_ROOT` (design.md §6): `/home/app/.aws/credentials` is `<root>/home/app/.aws/credentials`.
The emulated SSM Agent does what the real one does for an `aws:runShellScript` step on Linux: writes the
lines to `_script.sh` in an orchestration directory and runs it with `sh`, with `SSM_<Param>` variables, the
node's role credentials in `<root>/root/.aws/credentials` (`[default]`, via `AWS_SHARED_CREDENTIALS_FILE`),
and records exit code, stdout and stderr.

`ServerFaults` are test affordances: they make a node misbehave in ways the rotation must survive.
"""

from __future__ import annotations

import configparser
import datetime
import hashlib
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from keyrotation.contract import RESULT_MARKER

from sandbox.moto.run_command import linux_shell_steps
from sandbox.moto.ssm import PluginResult, RunRequest
from sandbox.warm_python_manager import WarmPython, cold_agents_requested

AGENT_VERSION = "3.3.2957.0"  # ≥ 3.3.2746.0: ENV_VAR interpolation
WRONG_KEY_ID = "AKIASANDBOXWRONGKEY0"
_PARAM = re.compile(r"\{\{\s*([A-Za-z0-9_.]+)\s*\}\}")


@dataclass
class ServerFaults:
    """Test affordances: how a simulated server misbehaves."""

    fail: bool = False  # the agent exits 1 without touching anything
    wrong_key_id: bool = False  # the script runs, but its result line names another key
    no_marker: bool = False  # the script runs and exits 0, but prints no result line
    slow_seconds: float = 0.0  # delay before the script starts

    def any(self) -> bool:
        return self.fail or self.wrong_key_id or self.no_marker or self.slow_seconds > 0


@dataclass
class Server:
    instance_id: str
    name: str
    group: str
    tags: dict[str, str]
    root: Path
    online: bool = True
    faults: ServerFaults = field(default_factory=ServerFaults)
    registered: datetime.datetime = field(default_factory=lambda: datetime.datetime.now(datetime.UTC))
    runs: int = 0

    def path(self, absolute: str) -> Path:
        """Where this server's `absolute` path lives on the host."""
        return self.root / absolute.lstrip("/")


def instance_id_for(group: str, index: int) -> str:
    return "mi-" + hashlib.sha256(f"{group}/{index}".encode()).hexdigest()[:17]


class Fleet:
    """N simulated managed instances plus their SSM Agent; implements `sandbox.moto.ssm.ManagedInstances`."""

    def __init__(self, base_dir: Path, endpoint: str, region: str, *, workers: int | None = None,
                 local_users: tuple[str, ...] = ("app",), warm_agents: bool | None = None) -> None:
        self.base_dir = Path(base_dir)
        # Local accounts of every server (<root>/etc/passwd, which the agent reads under KEYROTATION_ROOT).
        # They map to whoever runs the sandbox, so the files the agent chowns stay ours.
        self.local_users = local_users
        self.endpoint = endpoint
        self.region = region
        self.servers: dict[str, Server] = {}
        self._roles: dict[str, str] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers or 2 * (os.cpu_count() or 1),
                                        thread_name_prefix="ssm-agent")
        self.agent_seconds = 0.0  # total wall time spent inside agent processes (for the benchmark)
        self._in_flight = 0
        self._idle = threading.Condition(self._lock)
        # `python3` for the servers: the warm interpreter (sandbox/warm_python.py) unless opted out; it
        # falls back to the real one by itself. Started now (a new process), waited for at the first run.
        if warm_agents is None:
            warm_agents = not cold_agents_requested()
        self.warm: WarmPython | None = None
        if warm_agents:
            from ssm_documents.render import AGENT_PATH

            self.warm = WarmPython(preload=[str(AGENT_PATH)]).start()

    @property
    def agent_python(self) -> str:
        """How the servers' `python3` runs: "warm" (sandbox/warm_python.py) or "cold" (a new interpreter)."""
        return "warm" if self.warm is not None and self.warm.ready() else "cold"

    # -------------------------------------------------------------------------------------- servers

    def add_servers(self, group: str, count: int, tags: dict[str, str] | None = None) -> list[Server]:
        added = []
        with self._lock:
            start = sum(1 for s in self.servers.values() if s.group == group)
            for index in range(start, start + count):
                instance_id = instance_id_for(group, index)
                server = Server(
                    instance_id=instance_id,
                    name=f"{group}-{index + 1:04d}",
                    group=group,
                    tags=dict(tags or {}),
                    root=self.base_dir / instance_id,
                )
                server.root.mkdir(parents=True, exist_ok=True)
                server.path("/tmp").mkdir(mode=0o700, exist_ok=True)  # noqa: S108 - the server's own /tmp
                self._write_passwd(server)
                self.servers[instance_id] = server
                added.append(server)
        return added

    def _write_passwd(self, server: Server) -> None:
        uid, gid = os.getuid(), os.getgid()
        lines = ["root:x:0:0:root:/root:/bin/sh"]
        lines += [f"{name}:x:{uid}:{gid}:{name}:/home/{name}:/bin/sh" for name in self.local_users]
        path = server.path("/etc/passwd")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")

    def in_group(self, group: str) -> list[Server]:
        return [s for s in self.servers.values() if s.group == group]

    def set_role(self, group: str, role_arn: str) -> None:
        """The hybrid activation role of `group`: its nodes get temporary credentials for it."""
        self._roles[group] = role_arn
        sts = boto3.client("sts", endpoint_url=self.endpoint, region_name=self.region,
                           aws_access_key_id="AKIASANDBOXSSMSERVICE", aws_secret_access_key="sandbox-ssm")
        creds = sts.assume_role(RoleArn=role_arn, RoleSessionName="ssm-agent")["Credentials"]
        for server in self.in_group(group):
            self._write_agent_credentials(server, creds)

    @staticmethod
    def _write_agent_credentials(server: Server, creds: dict[str, Any]) -> None:
        path = server.path("/root/.aws/credentials")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            "[default]\n"
            f"aws_access_key_id = {creds['AccessKeyId']}\n"
            f"aws_secret_access_key = {creds['SecretAccessKey']}\n"
            f"aws_session_token = {creds['SessionToken']}\n"
        )
        path.chmod(0o600)

    # ----------------------------------------------------------------------------- credentials files

    @staticmethod
    def write_credentials(server: Server, file: str, profile: str, key_id: str, secret: str) -> None:
        """Install an application key the way an operator would before the first rotation."""
        path = server.path(file)
        path.parent.mkdir(parents=True, exist_ok=True)
        parser = configparser.RawConfigParser()
        if path.exists():
            parser.read(path)
        if not parser.has_section(profile):
            parser.add_section(profile)
        parser.set(profile, "aws_access_key_id", key_id)
        parser.set(profile, "aws_secret_access_key", secret)
        with path.open("w") as handle:
            parser.write(handle)
        path.chmod(0o600)

    @staticmethod
    def read_credentials(server: Server, file: str, profile: str) -> tuple[str, str] | None:
        path = server.path(file)
        if not path.exists():
            return None
        parser = configparser.RawConfigParser()
        parser.read(path)
        if not parser.has_section(profile):
            return None
        return parser.get(profile, "aws_access_key_id"), parser.get(profile, "aws_secret_access_key")

    def deregister(self, instance_id: str) -> Server:
        """The server is decommissioned: SSM no longer knows it (DescribeInstanceInformation leaves it out,
        SendCommand listing it is refused with InvalidInstanceId). Its files stay for inspection."""
        return self.servers.pop(instance_id)

    # --------------------------------------------------------------------------- ManagedInstances

    def instance_information(self) -> list[dict[str, Any]]:
        now = datetime.datetime.now(datetime.UTC)
        infos = []
        for number, server in enumerate(self.servers.values()):
            infos.append(
                {
                    "InstanceId": server.instance_id,
                    "PingStatus": "Online" if server.online else "ConnectionLost",
                    "LastPingDateTime": now if server.online else server.registered,
                    "AgentVersion": AGENT_VERSION,
                    "IsLatestVersion": False,
                    "PlatformType": "Linux",
                    "PlatformName": "Ubuntu",
                    "PlatformVersion": "22.04",
                    "ActivationId": hashlib.sha256(server.group.encode()).hexdigest()[:8] + "-sandbox",
                    "IamRole": self._roles.get(server.group, "").rsplit("/", 1)[-1],
                    "RegistrationDate": server.registered,
                    "ResourceType": "ManagedInstance",
                    "Name": server.name,
                    "IPAddress": f"10.{number // 65536 % 256}.{number // 256 % 256}.{number % 256}",
                    "ComputerName": f"{server.name}.sandbox.local",
                    "SourceId": server.instance_id,
                    "SourceType": "AWS::SSM::ManagedInstance",
                    "Tags": dict(server.tags),
                }
            )
        return infos

    def dispatch(self, request: RunRequest, done: Callable[[list[PluginResult]], None]) -> bool:
        server = self.servers[request.instance_id]
        if not server.online:
            return False
        with self._lock:
            self._in_flight += 1
        self._pool.submit(self._run_safely, server, request, done)
        return True

    def wait_idle(self, timeout: float = 600.0) -> None:
        """Until every delivered command has finished (a failed rotation does not stop running agents)."""
        with self._idle:
            if not self._idle.wait_for(lambda: self._in_flight == 0, timeout=timeout):
                raise TimeoutError(f"{self._in_flight} agent run(s) still in progress after {timeout:.0f}s")

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self.warm is not None:
            self.warm.stop()

    # ---------------------------------------------------------------------------------- the agent

    def _run_safely(
        self, server: Server, request: RunRequest, done: Callable[[list[PluginResult]], None]
    ) -> None:
        try:
            results = self.run_document(server, request)
        except Exception as exc:  # an agent crash still ends the invocation, as on a real node
            now = datetime.datetime.now(datetime.UTC)
            results = [PluginResult("aws:runShellScript", "Failed", 1, "", f"agent error: {exc}", now, now)]
        try:
            done(results)
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def run_document(self, server: Server, request: RunRequest) -> list[PluginResult]:
        server.runs += 1
        if server.faults.slow_seconds:
            time.sleep(server.faults.slow_seconds)
        results = []
        for step in linux_shell_steps(request.document):
            result = self._run_step(server, request, step)
            results.append(result)
            if result.status != "Success":
                break
        return results

    def _run_step(self, server: Server, request: RunRequest, step: dict[str, Any]) -> PluginResult:
        inputs = step.get("inputs", {})
        lines = inputs.get("runCommand", [])
        if isinstance(lines, str):
            lines = [lines]
        values = {name: ",".join(v) for name, v in request.parameters.items()}
        script = "\n".join(_PARAM.sub(lambda m: values.get(m.group(1), m.group(0)), line) for line in lines)
        if server.faults.fail:
            script = 'echo "sandbox fault injection: this node\'s agent fails" >&2\nexit 1'
        workdir = server.path(
            f"/var/lib/amazon/ssm/{server.instance_id}/document/orchestration/{request.command_id}/"
            f"{step['name']}"
        )
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "_script.sh").write_text(script + "\n")
        env = self._environment(server, request)
        timeout = float(inputs.get("timeoutSeconds", 3600))
        started = datetime.datetime.now(datetime.UTC)
        clock = time.monotonic()
        try:
            proc = subprocess.run(["sh", "_script.sh"], cwd=workdir, env=env, capture_output=True, text=True,
                                  timeout=timeout, check=False)
            code, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
            status = "Success" if code == 0 else "Failed"
        except subprocess.TimeoutExpired as exc:
            code, status = -1, "TimedOut"
            stdout = _text(exc.stdout)
            stderr = _text(exc.stderr)
        with self._lock:
            self.agent_seconds += time.monotonic() - clock
        finished = datetime.datetime.now(datetime.UTC)
        stdout = self._apply_output_faults(server, stdout)
        return PluginResult(step["name"], status, code, stdout, stderr, started, finished)

    @staticmethod
    def _apply_output_faults(server: Server, stdout: str) -> str:
        if server.faults.no_marker:
            stdout = "".join(line for line in stdout.splitlines(keepends=True) if RESULT_MARKER not in line)
        if server.faults.wrong_key_id:
            stdout = re.sub(r'("access_key_id":\s*")[A-Z0-9]+(")', rf"\g<1>{WRONG_KEY_ID}\g<2>", stdout)
        return stdout

    def _environment(self, server: Server, request: RunRequest) -> dict[str, str]:
        python_bin = str(Path(sys.executable).parent)
        if self.warm is not None and self.warm.ready():
            python_bin = f"{self.warm.bin_dir}:{python_bin}"  # the shim's python3 first, then the venv's
        env = {
            "PATH": f"{python_bin}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(server.path("/root")),
            "LANG": "C.UTF-8",
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_SHARED_CREDENTIALS_FILE": str(server.path("/root/.aws/credentials")),
            "AWS_CONFIG_FILE": str(server.path("/root/.aws/config")),
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_SSM_INSTANCE_ID": server.instance_id,
            "AWS_SSM_REGION_NAME": self.region,
            "KEYROTATION_ROOT": str(server.root),
            "TMPDIR": str(server.path("/tmp")),  # noqa: S108 - the server's own /tmp (the step's mktemp -d)
        }
        for name, values in request.parameters.items():
            env[f"SSM_{name}"] = ",".join(values)
        return env


def _text(value: str | bytes | None) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value

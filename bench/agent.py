"""P5: the agent alone on one simulated server, boto3 (botocore) path vs AWS CLI path.

One emulator, one user, one server. Each sample is one Run Command invocation as the emulated SSM Agent runs
it (the document's `aws:runShellScript` under `sh`: find python, unpack the agent, run it), timed from the
outside: wall time and the CPU time of the child processes (`RUSAGE_CHILDREN`). A `rotate` sample first gets
a fresh key into the secret (outside the timing), so every sample really rewrites the file. The parts of one
run are then timed on their own (python start-up, the version probe, unpacking, importing botocore, the
agent itself) to show where an agent run's time goes.

`python -m bench.agent SPEC_JSON` prints one JSON object as its last line.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.probe import REPO, _zygote_cpu, load_assembly

_FLEET: Any = None  # the fleet being measured (its warm interpreter's CPU counts as the agents')


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime + _zygote_cpu(_FLEET)


def _stats(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
        "n": len(values),
    }


def _timed(command: list[str], env: dict[str, str], cwd: Path | None = None) -> tuple[float, float, int]:
    cpu = _children_cpu()
    started = time.perf_counter()
    proc = subprocess.run(command, env=env, cwd=cwd, capture_output=True, check=False)
    return time.perf_counter() - started, _children_cpu() - cpu, proc.returncode


def measure(assembly_dir: Path, repeats: int, workdir: Path, *, cold: bool = True) -> dict[str, Any]:
    from sandbox.demo import Sandbox, Scenario
    from sandbox.emulator import Emulator
    from sandbox.moto.run_command import parse_document
    from sandbox.moto.ssm import RunRequest

    workdir.mkdir(parents=True, exist_ok=True)
    assembly, settings = load_assembly(assembly_dir)
    out: dict[str, Any] = {"repeats": repeats, "paths": {}, "parts": {}}
    with Emulator() as emulator:
        scenario = Scenario(users=1, servers=1)
        scenario.cold_agents = cold  # type: ignore[attr-defined]
        sandbox = Sandbox(emulator, assembly, settings, workdir, scenario)
        global _FLEET
        _FLEET = sandbox.fleet
        out["agent_python"] = str(getattr(sandbox.fleet, "agent_python", "cold"))  # waits for a warm-up
        try:
            deployment = sandbox.deployment
            user = deployment.settings["users"][0]
            name = user["name"]
            server = next(iter(sandbox.fleet.servers.values()))
            stored = emulator.client("ssm").get_document(Name=deployment.document_name)
            document = parse_document(stored["Content"], stored.get("DocumentFormat", "JSON"))
            iam = emulator.client("iam")
            secrets = emulator.client("secretsmanager")
            current = sandbox.initial_keys[name].key_id
            fleet = sandbox.fleet
            base_environment = fleet._environment

            def new_key() -> str:
                nonlocal current
                key = iam.create_access_key(UserName=name)["AccessKey"]
                secrets.put_secret_value(
                    SecretId=deployment.secrets[name],
                    VersionStages=["AWSCURRENT"],
                    SecretString=json.dumps(
                        {
                            "aws_access_key_id": key["AccessKeyId"],
                            "aws_secret_access_key": key["SecretAccessKey"],
                            "user": name,
                            "rotation_token": uuid.uuid4().hex,
                            "created_at": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                        }
                    ),
                )
                iam.delete_access_key(UserName=name, AccessKeyId=current)
                current = key["AccessKeyId"]
                return current

            def request(action: str, key_id: str) -> Any:
                parameters = {
                    "SecretId": [deployment.secrets[name]],
                    "CredentialsFile": [user["credentials_file"]],
                    "Profile": [user["profile"]],
                    "FileOwner": [user["file_owner"]],
                    "ExpectedAccessKeyId": [key_id],
                    "ReloadHook": [user.get("reload_hook") or ""],
                    "Action": [action],
                }
                return RunRequest(
                    uuid.uuid4().hex, server.instance_id, deployment.document_name, document, parameters
                )

            for path in ("botocore", "cli"):

                def environment(srv: Any, req: Any, path: str = path) -> dict[str, str]:
                    return {**base_environment(srv, req), "KEYROTATION_AWS_CLIENT": path}

                fleet._environment = environment  # type: ignore[method-assign]
                samples: dict[str, dict[str, list[float]]] = {}
                for _ in range(repeats):
                    for action in ("rotate", "verify"):
                        key_id = new_key() if action == "rotate" else current
                        cpu = _children_cpu()
                        started = time.perf_counter()
                        results = fleet.run_document(server, request(action, key_id))
                        wall = time.perf_counter() - started
                        used = _children_cpu() - cpu
                        output = "".join(r.stdout for r in results)
                        if not all(r.status == "Success" for r in results) or '"status": "ok"' not in output:
                            raise RuntimeError(
                                f"agent run failed ({path}, {action}): {output[-500:]}"
                                f"{''.join(r.stderr for r in results)[-500:]}"
                            )
                        entry = samples.setdefault(action, {"wall": [], "cpu": []})
                        entry["wall"].append(wall)
                        entry["cpu"].append(used)
                out["paths"][path] = {
                    action: {"wall": _stats(v["wall"]), "cpu": _stats(v["cpu"])}
                    for action, v in samples.items()
                }
            fleet._environment = base_environment  # type: ignore[method-assign]
            if not cold:
                return out
            out["parts"] = _parts(
                document, base_environment(server, request("verify", current)), repeats, workdir
            )
        finally:
            sandbox.close()
    return out


def _parts(document: dict[str, Any], env: dict[str, str], repeats: int, workdir: Path) -> dict[str, Any]:
    """Each process an agent run starts, timed alone (verify action, botocore path)."""
    from sandbox.moto.run_command import linux_shell_steps

    lines = linux_shell_steps(document)[0]["inputs"]["runCommand"]
    script = "\n".join(lines)
    b64 = re.search(r"KEYROTATION_AGENT_B64='([^']*)'", script)
    decoder = re.search(r"KEYROTATION_DECODER='([^']*)'", script)
    probe = re.search(r'"\$candidate" -c "([^"]*)"', script)
    if b64 is None or decoder is None or probe is None:
        return {"error": "the document's script changed: parts not measured"}
    python = str(Path(sys.executable).parent / "python3")
    (workdir / "agent.b64").write_text(b64.group(1))
    agent = workdir / "keyrotation_agent.py"
    args = [
        f"--{flag}={env.get('SSM_' + name, '')}"
        for flag, name in (
            ("secret-id", "SecretId"),
            ("credentials-file", "CredentialsFile"),
            ("profile", "Profile"),
            ("file-owner", "FileOwner"),
            ("expected-access-key-id", "ExpectedAccessKeyId"),
            ("reload-hook", "ReloadHook"),
            ("action", "Action"),
        )
    ]
    commands = {
        "sh -c true": ["sh", "-c", "true"],
        "python3 -c pass": [python, "-c", "pass"],
        "python version probe": [python, "-c", probe.group(1)],
        "unpack the agent": [python, "-c", decoder.group(1), str(workdir / "agent.b64"), str(agent)],
        "python3 -c 'import botocore.session'": [python, "-c", "import botocore.session"],
        "agent verify (botocore)": [python, str(agent), *args],
        "agent verify (cli)": [python, str(agent), *args],
        "aws --version (CLI start-up)": [str(Path(sys.executable).parent / "aws"), "--version"],
    }
    out: dict[str, Any] = {}
    for label, command in commands.items():
        run_env = dict(env, KEYROTATION_AWS_CLIENT="cli") if label.endswith("(cli)") else env
        walls, cpus = [], []
        for _ in range(repeats):
            wall, cpu, code = _timed(command, run_env, cwd=workdir)
            if code != 0:
                raise RuntimeError(f"{label}: exit {code}")
            walls.append(wall)
            cpus.append(cpu)
        out[label] = {"wall": _stats(walls), "cpu": _stats(cpus)}
    return out


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    for path in (str(REPO), str(REPO / "lambdas"), str(REPO / "agent_scripts")):
        if path not in sys.path:
            sys.path.insert(0, path)
    with tempfile.TemporaryDirectory(prefix="keyrotation-bench-agent-") as tmp:
        result = measure(
            Path(spec["assembly_dir"]), int(spec.get("repeats", 5)), Path(tmp) / "cold", cold=True
        )
        warm = measure(
            Path(spec["assembly_dir"]), int(spec.get("repeats", 5)), Path(tmp) / "warm", cold=False
        )
        result["warm"] = warm
    sys.stdout.flush()
    os.write(1, (json.dumps(result) + "\n").encode())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

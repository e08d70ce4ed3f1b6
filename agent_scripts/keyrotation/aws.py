"""AWS access with the server's own credentials: botocore when importable, else the AWS CLI. Fetches
the secret, and proves a key works from this server (sts:GetCallerIdentity)."""

import json
import os
import re
import subprocess
import time
from typing import Any, Dict, List, Optional, Tuple

from .base import KEY_ID, SECRET_KEY, AgentError, env_float, log
from .contract import PATTERNS

SECRET_KEY_PATTERN = r"^[A-Za-z0-9/+=]{16,256}$"


def region_for(secret_id: str) -> Optional[str]:
    match = re.match(r"arn:aws[a-z-]*:secretsmanager:([a-z0-9-]+):", secret_id)
    if match:
        return match.group(1)
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_SSM_REGION_NAME"):
        if os.environ.get(name):
            return os.environ[name]
    return None


class AwsClient:
    """The two calls the agent makes, through botocore if importable, else the AWS CLI.

    KEYROTATION_AWS_CLIENT=cli forces the CLI (tests; servers whose botocore is broken), =botocore forbids it.
    """

    def __init__(self) -> None:
        choice = os.environ.get("KEYROTATION_AWS_CLIENT", "auto")
        if choice not in ("auto", "botocore", "cli"):
            raise AgentError("invalid_parameter", "KEYROTATION_AWS_CLIENT must be auto, botocore or cli")
        self.botocore = None  # type: Any
        if choice != "cli":
            try:
                import botocore.session

                self.botocore = botocore
            except ImportError:
                if choice == "botocore":
                    raise AgentError("no_aws_client", "botocore is not importable") from None
        self.cli = None  # type: Optional[str]
        if self.botocore is None:
            self.cli = find_cli()
            if self.cli is None:
                raise AgentError(
                    "no_aws_client", "neither botocore nor the AWS CLI is available on this server"
                )
        self.kind = "botocore" if self.botocore is not None else "cli"
        self._loader = None  # type: Any
        self._loader_path = None  # type: Any

    def _config(self) -> Any:
        from botocore.config import Config
        from botocore.exceptions import InvalidRetryConfigurationError

        try:
            return Config(
                retries={"mode": "standard", "max_attempts": 4}, connect_timeout=10, read_timeout=30
            )
        except InvalidRetryConfigurationError:
            # botocore < 1.15 (e.g. Ubuntu 18.04's python3-botocore, on Python 3.6) has no retry modes: it
            # refuses "mode", which would fail every call. Its legacy retries still cover throttling.
            return Config(retries={"max_attempts": 4}, connect_timeout=10, read_timeout=30)

    def _share_loader(self, session: Any) -> None:
        """One data loader for every session of this run (same data path): botocore's JSON (endpoints,
        partitions, defaults, the service models) is read and parsed once per run, not once per session.

        The sessions themselves stay separate: the secret is fetched with this server's own credentials, the
        proof is signed with the rotated profile's, and botocore ties one credential chain to one session.
        """
        data_path = session.get_config_variable("data_path")
        if self._loader is not None and data_path == self._loader_path:
            session.register_component("data_loader", self._loader)
        else:
            self._loader = session.get_component("data_loader")
            self._loader_path = data_path

    def get_secret_string(self, secret_id: str) -> str:
        region = region_for(secret_id)
        if self.botocore is not None:
            session = self.botocore.session.get_session()
            try:
                self._share_loader(session)
                client = session.create_client("secretsmanager", region_name=region, config=self._config())
                response = client.get_secret_value(SecretId=secret_id, VersionStage="AWSCURRENT")
            except Exception as exc:  # noqa: BLE001 - any botocore failure is reported by its code
                raise AgentError(
                    "secret_fetch_failed", "GetSecretValue failed: " + botocore_error(exc)
                ) from None
        else:
            args = [
                "secretsmanager",
                "get-secret-value",
                "--secret-id=" + secret_id,
                "--version-stage",
                "AWSCURRENT",
            ]
            response = run_cli(
                self.cli or "aws", args, region, dict(os.environ), "secret_fetch_failed", "GetSecretValue"
            )
        value = response.get("SecretString") if isinstance(response, dict) else None
        if not isinstance(value, str):
            raise AgentError("secret_malformed", "the secret has no SecretString")
        return value

    def caller_arn(self, credentials_file: str, profile: str, key_id: str, region: Optional[str]) -> str:
        """sts:GetCallerIdentity signed with ``profile`` of ``credentials_file`` only (no env credentials,
        no config file): what a consumer of that profile will get."""
        if self.botocore is not None:
            try:
                session = self.botocore.session.Session(profile=profile)
                session.set_config_variable("credentials_file", credentials_file)
                session.set_config_variable("config_file", os.devnull)
                self._share_loader(session)
                credentials = session.get_credentials()
                if credentials is None or credentials.method != "shared-credentials-file":
                    raise AgentError("verification_failed", "botocore did not take the keys from the file")
                if credentials.access_key != key_id:
                    raise AgentError("verification_failed", "botocore read another key from the file")
                client = session.create_client(
                    "sts", region_name=region or "us-east-1", config=self._config()
                )
                return str(client.get_caller_identity()["Arn"])
            except AgentError:
                raise
            except Exception as exc:  # noqa: BLE001
                raise AgentError(
                    "verification_failed", "GetCallerIdentity failed: " + botocore_error(exc)
                ) from None
        env = dict(os.environ)
        for name in (
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_SECURITY_TOKEN",
            "AWS_PROFILE",
            "AWS_DEFAULT_PROFILE",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_ROLE_ARN",
        ):
            env.pop(name, None)
        env["AWS_SHARED_CREDENTIALS_FILE"] = credentials_file
        env["AWS_CONFIG_FILE"] = os.devnull
        env["AWS_EC2_METADATA_DISABLED"] = "true"
        args = ["sts", "get-caller-identity", "--profile", profile]
        response = run_cli(
            self.cli or "aws", args, region or "us-east-1", env, "verification_failed", "GetCallerIdentity"
        )
        return str(response.get("Arn", ""))


def botocore_error(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", "Unknown"))
    return type(exc).__name__


def find_cli() -> Optional[str]:
    configured = os.environ.get("KEYROTATION_AWS_CLI")
    if configured:
        return configured
    import shutil

    found = shutil.which("aws")
    if found:
        return found
    for candidate in (
        "/usr/local/bin/aws",
        "/usr/bin/aws",
        "/snap/bin/aws",
        r"C:\Program Files\Amazon\AWSCLIV2\aws.exe",
    ):
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def run_cli(
    cli: str, args: List[str], region: Optional[str], env: Dict[str, str], code: str, call: str
) -> Any:
    env["AWS_PAGER"] = ""
    command = [cli] + args + ["--output", "json"]
    if region:
        command += ["--region", region]
    try:
        proc = subprocess.run(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AgentError(code, "%s via the AWS CLI failed: %s" % (call, type(exc).__name__)) from None
    if proc.returncode != 0:
        stderr = proc.stderr.decode("utf-8", "replace")
        match = re.search(r"\(([A-Za-z0-9.]+)\) when calling", stderr)
        reason = match.group(1) if match else "exit %d: %s" % (proc.returncode, stderr.strip()[-200:])
        raise AgentError(code, "%s via the AWS CLI failed: %s" % (call, reason))
    try:
        return json.loads(proc.stdout.decode("utf-8"))
    except ValueError:
        raise AgentError(code, "%s via the AWS CLI returned no JSON" % call) from None


def parse_secret(value: str, expected: str) -> Tuple[str, str]:
    try:
        data = json.loads(value)
    except ValueError:
        raise AgentError("secret_malformed", "the secret is not a JSON object") from None
    if not isinstance(data, dict):
        raise AgentError("secret_malformed", "the secret is not a JSON object")
    key_id = data.get(KEY_ID)
    secret = data.get(SECRET_KEY)
    if not isinstance(key_id, str) or not re.fullmatch(PATTERNS["ExpectedAccessKeyId"], key_id) or not key_id:
        raise AgentError("secret_malformed", "the secret's %s is missing or not an access key id" % KEY_ID)
    if not isinstance(secret, str) or not re.fullmatch(SECRET_KEY_PATTERN, secret):
        raise AgentError("secret_malformed", "the secret's %s is missing or malformed" % SECRET_KEY)
    if expected and key_id != expected:
        raise AgentError(
            "stale_secret",
            "the secret holds %s, expected %s (stale read); nothing was changed" % (key_id, expected),
        )
    return key_id, secret


def prove_key_works(
    aws: AwsClient, credentials_file: str, profile: str, key_id: str, region: Optional[str]
) -> str:
    """Retry GetCallerIdentity while IAM propagates the new key (KEYROTATION_VERIFY_TIMEOUT, default 60 s)."""
    budget = env_float("KEYROTATION_VERIFY_TIMEOUT", 60.0)
    interval = env_float("KEYROTATION_VERIFY_INTERVAL", 5.0)
    deadline = time.monotonic() + budget
    attempt = 0
    while True:
        attempt += 1
        try:
            return aws.caller_arn(credentials_file, profile, key_id, region)
        except AgentError as exc:
            if time.monotonic() + interval > deadline:
                raise AgentError(
                    "verification_failed", "%s (after %d attempts in %.0f s)" % (exc.message, attempt, budget)
                ) from None
            log("attempt %d: %s; retrying" % (attempt, exc.message))
            time.sleep(interval)

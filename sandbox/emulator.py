"""The embedded AWS emulator: moto's server on 127.0.0.1 (free port) with the sandbox's patches
(sandbox.moto.install)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import boto3
from botocore.config import Config

from sandbox.moto import install
from sandbox.moto.ssm import ManagedInstances, attach_fleet

ACCOUNT_ID = "123456789012"  # moto's default account
REGION = "us-east-1"


class Emulator:
    """Context manager: `with Emulator() as emu: emu.client("iam")`.

    While running, `AWS_ENDPOINT_URL` and `MOTO_PORT` point at it (moto's Step Functions executor reaches
    its aws-sdk and Lambda integrations through `MOTO_PORT`), and fake credentials are set so nothing can
    reach a real account.
    """

    def __init__(self, region: str = REGION) -> None:
        self.region = region
        self.account_id = ACCOUNT_ID
        self._server: Any = None
        self._saved_env: dict[str, str | None] = {}
        self.endpoint = ""
        self._clients: dict[str, Any] = {}

    def start(self) -> Emulator:
        from moto.server import ThreadedMotoServer

        install.install()
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
        # moto's executor logs every error it evaluates, including those a Choice/Catch handles as designed;
        # what matters is in the execution history.
        logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        env = {
            "MOTO_PORT": str(port),
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ACCESS_KEY_ID": "AKIASANDBOXOPERATOR0",
            "AWS_SECRET_ACCESS_KEY": "sandbox-operator",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        for key, value in env.items():
            self._saved_env[key] = os.environ.get(key)
            os.environ[key] = value
        for key in ("AWS_SESSION_TOKEN", "AWS_PROFILE"):
            self._saved_env[key] = os.environ.pop(key, None)
        self.reset()
        return self

    def reset(self) -> None:
        """Forget every resource in every emulated service (moto's state is process-wide)."""
        from moto.core.base_backend import BackendDict

        BackendDict.reset()

    def stop(self) -> None:
        self._clients.clear()
        if self._server is not None:
            self._server.stop()
            self._server = None
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()
        install.uninstall()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # ----------------------------------------------------------------------------------------- clients

    def client(self, service: str, config: Config | None = None, **credentials: str) -> Any:
        """A client of the emulator; credentials default to an operator's (moto checks none)."""
        cacheable = config is None and not credentials
        if cacheable and service in self._clients:
            return self._clients[service]
        base = Config(retries={"mode": "standard", "max_attempts": 3})
        client = boto3.client(
            service,  # type: ignore[call-overload]
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=credentials.get("aws_access_key_id", "AKIASANDBOXOPERATOR0"),
            aws_secret_access_key=credentials.get("aws_secret_access_key", "sandbox-operator"),
            aws_session_token=credentials.get("aws_session_token"),
            config=base.merge(config) if config else base,
        )
        if cacheable:
            self._clients[service] = client
        return client

    def backend(self, service: str) -> Any:
        """moto's in-process backend for this account/region (for checks AWS would not expose)."""
        from moto.backends import get_backend

        backends = get_backend(service)  # type: ignore[arg-type]
        if service in ("iam", "sts"):
            return backends[self.account_id]["aws" if service == "iam" else self.region]
        if service == "stepfunctions":
            from moto.stepfunctions.parser.models import stepfunctions_parser_backends

            return stepfunctions_parser_backends[self.account_id][self.region]
        return backends[self.account_id][self.region]

    def execution_events(self, execution_arn: str, start: int) -> list[dict[str, Any]]:
        """History events of an execution from index `start` on, read in-process.

        GetExecutionHistory returns (and moto deep-copies) the whole history, every state's full input and
        output: following a long execution through it costs more CPU than the rotation itself.
        """
        execution = self.backend("stepfunctions").describe_execution(execution_arn)
        env = execution.exec_worker.env
        if env is None:  # not started yet
            return []
        manager = env.event_manager
        with manager._mutex:
            return list(manager._history_event_list[start:])

    def attach_fleet(self, fleet: ManagedInstances) -> None:
        attach_fleet(self.backend("ssm"), fleet)


def wait_for(check: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05) -> Any:
    """Poll until `check()` is truthy; return its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s (last value {value!r})")
        time.sleep(interval)

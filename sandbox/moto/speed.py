"""Speed only (bench/analysis.md, P4): moto's executor makes a new boto3 client for every Lambda task and
every poll of a child execution, re-parses a definition for every execution and rebuilds a JSONPath parser
(yacc tables) for every path; moto's server lists its own package directory (a stat per service) to route
every request. Each replacement returns what the original would.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any


def reusing_clients(original: Callable[..., Any]) -> Callable[..., Any]:
    """moto's `boto_client_for`, made once per (region, service, where it sends): boto3 clients are
    thread-safe, and making one costs more CPU than the Lambda task it invokes. moto 5.2.5 signs every
    such client with the same fixed key whatever `state_credentials` says, so they do not enter the key."""
    from moto.core.models import botocore_stubber
    from moto.settings import moto_server_port

    made: dict[tuple[Any, ...], Any] = {}
    lock = threading.Lock()

    def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        key = (region, service, botocore_stubber.enabled, moto_server_port())
        with lock:
            client = made.get(key)
            if client is None:
                client = made[key] = original(region, service, state_credentials)
        return client

    return boto_client_for


def memoized_json_path(original: Callable[[str], Any]) -> Callable[[str], Any]:
    """jsonpath_ng's `parse`, once per path (parsed paths are immutable; building the parser is not cheap)."""
    return functools.lru_cache(maxsize=1024)(original)


def listed_once(original: Callable[[], Any]) -> Callable[[], Any]:
    modules = tuple(original())  # the installed package's directories do not change while it runs

    def list_of_moto_modules() -> tuple[str, ...]:
        return modules

    return list_of_moto_modules


@functools.lru_cache(maxsize=16)
def _syntax_tree(definition: str) -> Any:
    """The ANTLR parse of a definition, once per definition (read-only once built)."""
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

    return AmazonStateLanguageParser.parse(definition)[1]


def evaluation_entrypoint(self: Any) -> Any:
    """moto parses the definition on every execution start; the parse is the costly half (a 500-user
    scheduled run starts 501 executions of two definitions). The evaluation components, which hold state
    while an execution runs, are still built anew for each execution from the shared syntax tree."""
    from moto.stepfunctions.parser.asl.parse.preprocessor import Preprocessor

    return Preprocessor().visit(_syntax_tree(self._evaluation_details.state_machine_details.definition))


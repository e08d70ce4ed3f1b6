"""The warm interpreter's botocore caches (sandbox/warm_python.py): process-level caches, in the zygote only,
for what every new botocore Session/Loader redoes.

- a Loader's parsed JSON (models, endpoints, partitions): shared by every Loader whose *existing* search
  paths are the same (a missing directory contributes nothing to what a Loader finds);
- an EventAliaser's event-name translations (the default aliases): shared;
- `accepts_kwargs(handler)` (inspect.getfullargspec, ≈ 250 calls per Session): memoized per function.
All three are pure functions of their keys; botocore already shares the first two within one Session.

Imports nothing of the sandbox's but the registry, and no moto: the zygote's children are the servers'
python3.
"""

from __future__ import annotations

import os
import types
from typing import Any

from sandbox.moto.registry import Patch


def patches() -> list[Patch]:
    from botocore import hooks, loaders

    caches: dict[tuple[Any, ...], dict[Any, Any]] = {}

    def wrap_loader_init(loader_init: Any) -> Any:
        def shared_loader_init(self: Any, *args: Any, **kwargs: Any) -> None:
            loader_init(self, *args, **kwargs)
            if type(self) is loaders.Loader and type(self.file_loader) is loaders.JSONFileLoader:
                # os.path as botocore's own loader does (a Path per search path per Loader costs more)
                key = (tuple(p for p in self._search_paths if os.path.isdir(p)),  # noqa: PTH112
                       tuple(self._extras_types))
                self._cache = caches.setdefault(key, {})

        return shared_loader_init

    aliases: dict[str, str] = {}

    def wrap_aliaser_init(aliaser_init: Any) -> Any:
        def shared_aliaser_init(self: Any, event_emitter: Any, event_aliases: Any = None) -> None:
            aliaser_init(self, event_emitter, event_aliases)
            if event_aliases is None:
                self._alias_name_cache = aliases

        return shared_aliaser_init

    accepts: dict[Any, Any] = {}

    def wrap_accepts_kwargs(original_accepts: Any) -> Any:
        def accepts_kwargs(func: Any) -> Any:
            if isinstance(func, types.MethodType | types.FunctionType):
                key = getattr(func, "__func__", func)
                if key not in accepts:
                    accepts[key] = original_accepts(func)
                return accepts[key]
            return original_accepts(func)

        return accepts_kwargs

    return [
        Patch(loaders.Loader, "__init__", wrap_loader_init, must_exist=True),
        Patch(hooks.EventAliaser, "__init__", wrap_aliaser_init, must_exist=True),
        Patch(hooks, "accepts_kwargs", wrap_accepts_kwargs, must_exist=True),
    ]

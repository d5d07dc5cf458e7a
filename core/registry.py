"""Name -> entry registries whose lookups name the valid options (smp's ``create_model`` style).

Every concept a spec can name (architectures, losses, optimizers, schedules, samplers, pruners,
metrics) is one :class:`Registry`: the entries carry everything SegTune knows about that option,
so adding one is adding one entry. ``lazy`` defers an import to the first call, so a registry can
name a factory that needs a heavy library (segmentation-models-pytorch) without importing it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, Protocol, TypeVar

from core.errors import SegTuneError, unknown_option


class Named(Protocol):
    @property
    def name(self) -> str: ...


E = TypeVar("E", bound=Named)


class Registry(Generic[E]):
    """An ordered, read-only collection of entries keyed by their ``name``."""

    def __init__(self, kind: str, entries: Iterable[E]) -> None:
        self.kind = kind
        self._entries: dict[str, E] = {}
        for entry in entries:
            if entry.name in self._entries:
                raise ValueError(f"{kind} {entry.name!r} is registered twice")
            self._entries[entry.name] = entry

    def get(self, name: str) -> E:
        """The entry called ``name``; a :class:`SegTuneError` listing the valid names otherwise."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise SegTuneError(unknown_option(self.kind, name, self.names)) from None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def problem(self, name: Any) -> str | None:
        """Why ``name`` is not a valid option, or None (for validators that collect problems)."""
        return None if isinstance(name, str) and name in self._entries else unknown_option(self.kind, name, self.names)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[E]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)


def lazy(target: str) -> Callable[..., Any]:
    """A callable that imports ``"package.module:function"`` on its first call and forwards to it."""
    module_name, _, attribute = target.partition(":")

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module_name), attribute)(*args, **kwargs)

    call.__qualname__ = call.__name__ = f"lazy[{target}]"
    call.target = target  # type: ignore[attr-defined]  # tests resolve it to check the factory exists
    return call

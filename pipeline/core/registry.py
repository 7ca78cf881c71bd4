"""Things registered by name (heads, dataset layouts): one key string names each in code, configs, the
command line and the Makefile. A name may be registered once; asking for an unknown one lists the known."""
from __future__ import annotations

from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, what: str, error: type[Exception], load: Callable[[], object] | None = None):
        self.what, self.error, self._load = what, error, load
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@registry.register("gru")``."""
        def add(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.what} {name!r} is already registered (by "
                                 f"{getattr(self._items[name], '__qualname__', self._items[name])})")
            self._items[name] = item
            return item
        return add

    def _loaded(self) -> dict[str, T]:
        if self._load is not None:
            self._load()          # imports the built-in ones (idempotent)
        return self._items

    def get(self, name: str) -> T:
        items = self._loaded()
        if name not in items:
            raise self.error(f"unknown {self.what} {name!r}; known {self.what}s: {', '.join(sorted(items))}")
        return items[name]

    def names(self) -> list[str]:
        return sorted(self._loaded())

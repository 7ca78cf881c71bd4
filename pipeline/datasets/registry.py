"""Dataset adapters registered by name: the name is the ``--dataset`` value, the module, and the README key.

An adapter turns a dataset root into a ``Scan``: entries with labels, groups and methods, and a split only
where the dataset fixes one (official files, a CSV split column). ``load_manifest`` assigns the rest.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from pipeline.core.registry import Registry
from pipeline.datasets.config import DatasetConfig
from pipeline.datasets.entry import DatasetError, VideoEntry


@dataclass
class Scan:
    entries: list[VideoEntry]
    # Pairs of groups that must land in one split although they are different groups, e.g. FF++ A and B of
    # a fake A_B (B's face is in it): the seeded split keeps them together, as FF++'s own pair splits do.
    links: list[tuple[str, str]] = field(default_factory=list)


Adapter = Callable[[Path, DatasetConfig], Scan]
_ADAPTERS: Registry[Adapter] = Registry("dataset layout", DatasetError)


def register_adapter(name: str):
    return _ADAPTERS.register(name)


def get_adapter(name: str) -> Adapter:
    return _ADAPTERS.get(name)


def list_adapters() -> list[str]:
    return _ADAPTERS.names()

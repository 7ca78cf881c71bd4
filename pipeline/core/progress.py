"""How a stage says how far it has got, without knowing who listens.

Stages take a ``Progress`` and call ``start`` and ``update`` on it; they never print. The command line
passes one that draws rich progress bars (``pipeline.ui.RichProgress``); a library caller, a test or the
web service passes another, or nothing (``SILENT``).
"""
from __future__ import annotations

from typing import Any


class Progress:
    """Progress callbacks, keyed by task: ``start("features", total=19)``, ``update("features", advance=1)``.

    Extra keyword fields (``frames=...``, ``status=...``) are for whoever draws the progress; a listener
    ignores the ones it does not know. The base class listens to nothing.
    """

    def start(self, key: str, total: int | None = None, completed: int = 0, **fields: Any) -> None:
        """A task begins (``total`` steps; None when unknown)."""

    def update(self, key: str, advance: int = 0, completed: int | None = None, **fields: Any) -> None:
        """A task moved on by ``advance`` steps, or to ``completed``."""


SILENT = Progress()


class Callback(Progress):
    """Every event to one function ``fn(key, event, fields)``: the simplest listener (tests, the service)."""

    def __init__(self, fn) -> None:
        self.fn = fn

    def start(self, key: str, total: int | None = None, completed: int = 0, **fields: Any) -> None:
        self.fn(key, "start", {"total": total, "completed": completed, **fields})

    def update(self, key: str, advance: int = 0, completed: int | None = None, **fields: Any) -> None:
        self.fn(key, "update", {"advance": advance, "completed": completed, **fields})

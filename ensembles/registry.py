"""Heads by name: ``@register_head("gru")`` on a class, ``create_head("gru", hidden=256)`` to build one.

One key string names a head everywhere: in code, in an ensemble config, on the command line
(``train-head gru``) and in the Makefile (``make train-head HEAD=gru``). The built-in heads live in
``ensembles.heads`` and are imported on first use, so the registry is complete whenever it is asked.
"""
from __future__ import annotations

import importlib
import inspect
from typing import Any

from torch import nn

from pipeline.core.errors import PipelineError
from pipeline.core.registry import Registry

class HeadError(PipelineError, ValueError):
    """An unknown head name or an option the head does not take; the message lists what exists."""


_HEADS: Registry[type[nn.Module]] = Registry(
    "head", HeadError, lambda: importlib.import_module("ensembles.heads"))   # registers the built-in heads


def register_head(name: str):
    """Class decorator: make ``cls`` buildable as ``create_head(name)``. A name may be registered once."""
    return _HEADS.register(name)


def list_heads() -> list[str]:
    return _HEADS.names()


def head_class(name: str) -> type[nn.Module]:
    return _HEADS.get(name)


def head_options(name: str) -> dict[str, Any]:
    """The options a head takes and their defaults (``in_dim`` included), from its constructor."""
    params = inspect.signature(head_class(name).__init__).parameters
    return {p.name: p.default for p in params.values()
            if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def create_head(name: str, **options: Any) -> nn.Module:
    """Build head ``name``; options that are None are dropped so the head's defaults hold (as timm does)."""
    cls = head_class(name)
    options = {k: v for k, v in options.items() if v is not None}
    known = head_options(name)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise HeadError(f"head {name!r} takes no option(s) {', '.join(unknown)}; "
                        f"its options: {', '.join(f'{k}={v!r}' for k, v in known.items())}")
    return cls(**options)


def parse_option(name: str, key: str, raw: str) -> Any:
    """A command-line ``key=value`` for head ``name``, typed like the option's default."""
    known = head_options(name)
    if key not in known:
        raise HeadError(f"head {name!r} takes no option {key!r}; its options: {', '.join(known)}")
    default = known[key]
    if isinstance(default, bool):
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise HeadError(f"option {key} of head {name!r}: expected true/false, got {raw!r}")
    kind = type(default) if isinstance(default, (int, float)) else str
    try:
        return kind(raw)
    except ValueError as exc:
        raise HeadError(f"option {key} of head {name!r}: cannot read {raw!r} as {kind.__name__}") from exc

"""Frozen-dataclass configs: defaults in code, then a TOML file, then command-line overrides.

Every stage's options are one frozen dataclass. ``add_options`` turns its fields into argparse options,
``resolve`` layers the three sources, and ``save`` writes the resolved config beside an output so every
artefact says exactly what produced it.

Each field says whether it is part of the *identity* of what it produces (``field(..., identity=False)``
for options that change only where or how fast, never the numbers): ``identity_of`` collects the identity
fields, and ``differences`` is the one comparison of two identities (stores, runs, resumed trainings).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import tomllib
import typing
from pathlib import Path
from typing import Any, TypeVar

from pipeline.core.atomic import write_json
from pipeline.core.errors import PipelineError

C = TypeVar("C")


class ConfigError(PipelineError, ValueError):
    """A config file or option that cannot be used; the message names what is wrong."""


def field(default: Any, help: str, *, cli: bool = True, identity: bool = True, omit_default: bool = False,
          **kw: Any) -> Any:
    """A dataclass field with its help text kept for the command line.

    ``identity=False`` marks an option that cannot change the output's numbers (a device, a batch size, a
    memory limit): it is left out of ``identity_of``, so changing it never makes outputs incomparable.
    ``omit_default=True`` is for an identity field added after outputs were made without it: it joins the
    identity only when set to something other than its default, so those earlier outputs keep theirs.
    """
    if isinstance(default, (list, dict, set)):
        raise TypeError("mutable defaults: use a tuple")
    return dataclasses.field(default=default, metadata={"help": help, "cli": cli, "identity": identity,
                                                        "omit_default": omit_default, **kw})


def _option_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _parse_value(kind: Any, raw: Any, name: str) -> Any:
    """Coerce a TOML or command-line value to the field's declared type."""
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if origin is typing.Union or str(origin) == "types.UnionType":  # Optional[X] / X | None
        inner = [a for a in args if a is not type(None)]
        if raw is None or (isinstance(raw, str) and raw.lower() in ("none", "")):
            return None
        return _parse_value(inner[0], raw, name)
    if origin is tuple:
        items = raw.split(",") if isinstance(raw, str) else list(raw)
        item_kind = args[0] if args else str
        return tuple(_parse_value(item_kind, i.strip() if isinstance(i, str) else i, name) for i in items)
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        if str(raw).lower() in ("1", "true", "yes", "on"):
            return True
        if str(raw).lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"option {name}: expected true/false, got {raw!r}")
    try:
        return kind(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"option {name}: cannot read {raw!r} as {getattr(kind, '__name__', kind)}") from exc


def add_options(parser: argparse.ArgumentParser, cls: type, *, skip: tuple[str, ...] = ()) -> None:
    """Add one ``--option`` per field of ``cls`` (default None, so unset options don't override)."""
    types = _field_types(cls)
    group = parser.add_argument_group(f"{cls.__name__} options (also settable in --config)")
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.metadata.get("cli", True):
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        kind = types[f.name]
        help_text = f"{f.metadata.get('help', '')} (default: {shown})".replace("%", "%%")   # argparse formats help
        if kind is bool:
            group.add_argument(_option_name(f.name), dest=f.name, default=None,
                               action=argparse.BooleanOptionalAction, help=help_text)
        else:
            choices = f.metadata.get("choices")
            group.add_argument(_option_name(f.name), dest=f.name, default=None, metavar=f.name.upper(),
                               choices=choices, help=help_text)


def read_file(path: str | Path | None, section: str | None = None) -> dict[str, Any]:
    """Read a TOML config file; ``section`` picks a table (``[features]``) when present."""
    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    if section and isinstance(data.get(section), dict):
        return data[section]
    return data


def build(cls: type[C], values: dict[str, Any]) -> C:
    """Make ``cls`` from a mapping, coercing types and refusing unknown keys."""
    types = _field_types(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"unknown option(s) for {cls.__name__}: {', '.join(unknown)}; "
                          f"known: {', '.join(sorted(names))}")
    kwargs = {k: _parse_value(types[k], v, k) for k, v in values.items()}
    cfg = cls(**kwargs)
    check = getattr(cfg, "validate", None)
    if check:
        check()
    return cfg


def resolve(cls: type[C], args: argparse.Namespace | None = None, config_path: str | Path | None = None,
            section: str | None = None, **explicit: Any) -> C:
    """Defaults <- config file <- command line <- explicit keyword values."""
    names = {f.name for f in dataclasses.fields(cls)}
    file_values = {k: v for k, v in read_file(config_path, section).items() if not isinstance(v, dict)}
    values = dict(file_values)
    if args is not None:
        values.update({k: v for k, v in vars(args).items() if k in names and v is not None})
    values.update({k: v for k, v in explicit.items() if v is not None})
    return build(cls, values)


def to_dict(cfg: Any) -> dict[str, Any]:
    out = dataclasses.asdict(cfg)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def to_json(cfg: Any) -> str:
    return json.dumps(to_dict(cfg), sort_keys=True)


def save(cfg: Any, path: str | Path) -> Path:
    """Write the resolved config as JSON beside an output (atomically)."""
    return write_json(path, {"type": type(cfg).__name__, **dict(sorted(to_dict(cfg).items()))})


def identity_of(cfg: Any) -> dict[str, Any]:
    """The fields of ``cfg`` that decide what it produces (``field(identity=True)``, the default)."""
    values = to_dict(cfg)
    return {f.name: values[f.name] for f in dataclasses.fields(cfg) if f.metadata.get("identity", True)
            and not (f.metadata.get("omit_default") and getattr(cfg, f.name) == f.default)}


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out or {prefix.rstrip("."): {}}
    return {prefix.rstrip("."): list(value) if isinstance(value, tuple) else value}


def differences(expected: dict[str, Any], actual: dict[str, Any], keys=None) -> list[str]:
    """What differs between two identities, as ``"key: expected != actual"`` lines (nested keys dotted).

    ``keys`` restricts the comparison to those top-level keys (default: every key of either side). This is
    the one comparison of identities: stores refuse to mix, runs refuse other stores, predict refuses other
    preprocessing, and a resumed training refuses another config, all through it.
    """
    names = sorted(set(expected) | set(actual)) if keys is None else list(keys)
    a = _flat({k: expected.get(k) for k in names})
    b = _flat({k: actual.get(k) for k in names})
    return [f"{k}: {a.get(k)!r} != {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]

"""Member checkpoints: written atomically, read without ever unpickling an arbitrary object.

A checkpoint is a ``torch.save`` dict of tensors and plain values (str, int, float, bool, None, lists and
dicts of them): weights, optimiser state, epoch, the resolved config and the store's provenance. It is read
with ``torch.load(weights_only=True)``, whose unpickler only rebuilds those types, so a crafted file cannot
run code on load; one holding any other object is refused with a ``CheckpointError``.

Atomic write: save to a temporary file in the same folder, fsync it, rename it over the old file and fsync
the folder. A process killed at any instant leaves either the old checkpoint or the new one, never half.
"""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from pipeline.core.atomic import atomic_file
from pipeline.core.errors import PipelineError

FORMAT = "deepfake-ensemble/member-checkpoint"
VERSION = 1


class CheckpointError(PipelineError):
    """A checkpoint that is missing, unreadable, of another format, or holds a pickled object."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` (plus format and version) to ``path`` atomically."""
    path = Path(path)
    with atomic_file(path, "xb") as fh:
        torch.save({"format": FORMAT, "version": VERSION, **state}, fh)
    return path


def _culprit(exc: pickle.UnpicklingError) -> str:
    """The line of torch's message that names the refused object (the rest advises weights_only=False)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    named = [line for line in lines if "GLOBAL" in line or "Unsupported" in line or "unsupported" in line]
    return (named or ["not a tensor or plain value"])[0].split(". Please")[0].rstrip(".")


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by ``save_checkpoint``; never executes code stored in the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"refusing to load {path}: it holds a pickled Python object, which loading would run as code "
            f"({_culprit(exc)}). Checkpoints of this project hold only tensors and plain values; do not load files "
            f"from untrusted sources, and retrain the member to get a safe checkpoint") from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as exc:
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a member checkpoint of this project (format "
                              f"{state.get('format') if isinstance(state, dict) else type(state).__name__!r})")
    if state.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {state.get('version')}; this version reads {VERSION}")
    return state

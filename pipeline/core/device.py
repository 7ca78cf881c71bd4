"""Which torch device a stage runs on: ``auto`` (CUDA when present) or an explicit one, checked."""
from __future__ import annotations

import torch

from pipeline.core.errors import PipelineError


def resolve_device(name: str) -> torch.device:
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` -> a usable torch.device, or a one-line error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise PipelineError(f"--device {name}: CUDA is not available on this machine; use --device cpu or auto")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise PipelineError(f"--device {name!r} is not a device: {exc}") from exc

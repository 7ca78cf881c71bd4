"""Stage one on Ray Data (``features --engine ray``): the same per-video code as the local engine, spread
over every CPU and GPU of a local Ray instance or a cluster, written by the one store writer on the driver.

Importing this package does not import Ray (``--engine local`` never loads it); ``run`` does, and says how
to install it when it is missing.
"""
from __future__ import annotations

from stages.ray_engine.config import RayConfig, require_ray

__all__ = ["RayConfig", "require_ray", "run", "report_rows"]


def run(*args, **kwargs):
    from stages.ray_engine.engine import run as _run
    return _run(*args, **kwargs)


def report_rows(stats) -> list[tuple[str, object]]:
    from stages.ray_engine.engine import report_rows as _rows
    return _rows(stats)

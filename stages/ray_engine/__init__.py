"""Stage one on Ray Data (``features --engine ray``): the same per-video code as the local engine, spread
over every CPU and GPU of a local Ray instance or a cluster, written by the one store writer on the driver.

Importing this package does not import Ray (``--engine local`` never loads it); ``engine.RayEngine`` does
when it is made, and says how to install it when it is missing.
"""
from stages.ray_engine.config import RayConfig, require_ray

__all__ = ["RayConfig", "require_ray"]

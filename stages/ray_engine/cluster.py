"""Joining Ray (a cluster, or a new instance on this machine) and planning the stages from its resources."""
from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Iterator

from pipeline.core.errors import PipelineError
from stages.ray_engine.config import RayConfig, require_ray

log = logging.getLogger(__name__)
GPU_BATCH = 16   # videos per fused GPU actor call: 256 crops at T=16, enough to keep a GPU busy


@dataclass(frozen=True)
class Cluster:
    address: str            # "local" for an instance started here
    cpus: float
    gpus: float
    nodes: tuple[dict, ...]  # per alive node: {"id", "cpus", "gpus"}


@dataclass(frozen=True)
class Plan:
    detect: str              # "tasks": CPU tasks decode/detect/crop; "actors": the actors do everything
    actors: tuple[int, int]  # actor pool size (min, max); equal when fixed
    batch: int               # videos per actor call
    actor_cpus: float
    actor_gpus: float
    device: str              # the actors' torch device
    decode_threads: int      # ffmpeg processes at once inside a fused actor

    def describe(self) -> dict:
        return asdict(self)

    def text(self) -> str:
        return (f"detection in {self.detect}; actors {self.actors[0]}-{self.actors[1]} x ({self.actor_cpus:g} CPU, "
                f"{self.actor_gpus:g} GPU, {self.device}); {self.batch} videos per actor call")


@contextmanager
def connect(cfg: RayConfig) -> Iterator[Cluster]:
    """Join ``--ray-address`` / ``$RAY_ADDRESS``, or start a Ray instance here; always let go at the end."""
    ray = require_ray()
    address = cfg.ray_address or os.environ.get("RAY_ADDRESS", "")
    owned = not ray.is_initialized()   # a caller (a notebook, a test) may have started Ray already
    # Ray prints worker output and raylet errors ("a worker died ...") on the driver's stdout, which is
    # reserved for --json: send them to stderr while Ray is attached.
    with contextlib.redirect_stdout(sys.stderr):
        if owned:
            _init(ray, cfg, address)
        try:
            yield describe(ray, address or "local")
        finally:
            if owned:
                ray.shutdown()


def _init(ray, cfg: RayConfig, address: str) -> None:
    common = {"include_dashboard": False, "logging_level": logging.WARNING}
    if address:
        if cfg.ray_cpus or cfg.ray_object_store_mb:
            log.warning("--ray-cpus / --ray-object-store-mb apply to a Ray instance started here, not to "
                        "the cluster at %s: ignored", address)
        ray.init(address=address, **common)
    else:
        mb = cfg.ray_object_store_mb
        ray.init(address="local", _node_ip_address="127.0.0.1", num_cpus=cfg.ray_cpus or None,
                 object_store_memory=mb * 2**20 if mb else None, **common)


def describe(ray, address: str) -> Cluster:
    res = ray.cluster_resources()
    nodes = tuple({"id": n["NodeID"], "cpus": n["Resources"].get("CPU", 0.0), "gpus": n["Resources"].get("GPU", 0.0)}
                  for n in ray.nodes() if n.get("Alive"))
    return Cluster(address, res.get("CPU", 0.0), res.get("GPU", 0.0), nodes)


def make_plan(cfg: RayConfig, feat, cluster: Cluster) -> Plan:
    """Stage sizes from the options, filling every 0 / -1 from the cluster's resources."""
    gpus = cfg.ray_actor_gpus if cfg.ray_actor_gpus >= 0 else (1.0 if cluster.gpus else 0.0)
    detect = cfg.ray_detect if cfg.ray_detect != "auto" else ("actors" if gpus > 0 else "tasks")
    if cfg.ray_actor_cpus:
        cpus = cfg.ray_actor_cpus
    elif gpus > 0 and detect == "actors":   # the GPU actor decodes too: give it the CPUs of its GPU share
        cpus = max(1.0, math.floor(cluster.cpus * gpus / max(cluster.gpus, gpus)))
    else:
        cpus = 1.0
    if cfg.ray_actors:
        actors = (cfg.ray_actors, cfg.ray_actors)
    elif gpus > 0:
        actors = (max(1, int(cluster.gpus // gpus)),) * 2
    elif detect == "actors":
        actors = (max(1, int(cluster.cpus // cpus)),) * 2
    else:   # CPU tasks do ~3/4 of the work (decode + detection); the pool grows while crops queue up
        actors = (1, max(1, int(cluster.cpus // (2 * cpus))))
    if cfg.ray_batch:
        batch = cfg.ray_batch
    else:
        batch = GPU_BATCH if gpus > 0 else max(1, math.ceil(feat.batch_size / feat.frames))
    device = feat.device if feat.device != "auto" else ("cuda" if gpus > 0 else "cpu")
    plan = Plan(detect, actors, batch, cpus, gpus, device, max(1, int(cpus)))
    check_fits(plan, cluster)
    return plan


def check_fits(plan: Plan, cluster: Cluster) -> None:
    """Refuse a plan whose actor fits on no node (Ray would wait for resources forever)."""
    fits = [n for n in cluster.nodes if n["cpus"] >= plan.actor_cpus and n["gpus"] >= plan.actor_gpus]
    if not fits:
        biggest = max(cluster.nodes, key=lambda n: (n["gpus"], n["cpus"]), default={"cpus": 0, "gpus": 0})
        raise PipelineError(f"an actor needs {plan.actor_cpus:g} CPU and {plan.actor_gpus:g} GPU but the largest "
                            f"node has {biggest['cpus']:g} CPU and {biggest['gpus']:g} GPU; lower "
                            "--ray-actor-cpus / --ray-actor-gpus")
    if plan.detect == "tasks" and cluster.cpus < plan.actor_cpus * plan.actors[0] + 1:
        raise PipelineError(f"{plan.actors[0]} actor(s) of {plan.actor_cpus:g} CPU leave no CPU for the "
                            f"decode/detect tasks on this {cluster.cpus:g}-CPU cluster; lower --ray-actors or "
                            "--ray-actor-cpus")

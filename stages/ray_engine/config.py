"""Options of the Ray engine (``[ray]`` in a --config file, ``--ray-*`` on the command line).

Zero means "choose from the cluster": every option has a default that uses the whole cluster, so pointing
the same command at a bigger cluster needs no new flags.
"""
from __future__ import annotations

from dataclasses import dataclass

from pipeline.core.config import ConfigError, field
from pipeline.core.errors import PipelineError

RAY_VERSION = "2.60.0"   # the version pinned by the `ray` extra in pyproject.toml (tested with)
INSTALL_HINT = (f"--engine ray needs Ray Data: pip install '.[ray]' (or pip install 'ray[data]=={RAY_VERSION}') "
                "in this environment, and the same on every node of a cluster")


@dataclass(frozen=True)
class RayConfig:
    ray_address: str = field("", "Ray cluster to join, e.g. 10.0.0.5:6379 (empty: "
                                 "$RAY_ADDRESS if set, else a new Ray instance on this machine)")
    ray_actors: int = field(0, "backbone actors (0: one per GPU when the cluster has GPUs, else an "
                               "autoscaling pool of up to half the CPUs)")
    ray_batch: int = field(0, "videos per actor call (0: batch_size / frames on CPU, 16 on GPU)")
    ray_actor_cpus: float = field(0.0, "CPUs reserved per actor (0: 1 on CPU; CPUs per GPU on GPU, "
                                       "for the actor's decode threads)")
    ray_actor_gpus: float = field(-1.0, "GPUs per actor (-1: 1 when the cluster has GPUs, else 0)")
    ray_detect: str = field("auto", "where face detection runs: tasks (CPU tasks, only crops reach the "
                                    "actors), actors (in the GPU actors, which then also decode), auto "
                                    "(actors when they have a GPU)", choices=("auto", "tasks", "actors"))
    ray_max_retries: int = field(3, "retries of a CPU task whose worker died (node lost, OOM kill) before "
                                    "the run stops; -1 retries forever. Actors are always restarted")
    ray_cpus: int = field(0, "CPUs of a Ray instance started here (0: all); ignored on a cluster")
    ray_object_store_mb: int = field(0, "object store of a Ray instance started here, MB (0: Ray's "
                                        "default, 30 percent of RAM); ignored on a cluster")

    def validate(self) -> None:
        if self.ray_actors < 0 or self.ray_batch < 0 or self.ray_actor_cpus < 0 or self.ray_cpus < 0:
            raise ConfigError("--ray-actors, --ray-batch, --ray-actor-cpus and --ray-cpus must be >= 0")
        if self.ray_actor_gpus < 0 and self.ray_actor_gpus != -1:
            raise ConfigError("--ray-actor-gpus must be >= 0 (or -1: one per actor when there are GPUs)")
        if self.ray_object_store_mb and self.ray_object_store_mb < 80:
            raise ConfigError("--ray-object-store-mb below 80 is too small for Ray to start")
        if self.ray_max_retries < -1:
            raise ConfigError("--ray-max-retries must be -1 (forever) or >= 0")


def require_ray():
    """The ``ray`` module with Ray Data, or a one-line error saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401  (ray without the [data] extra lacks pyarrow/pandas)
    except ImportError as exc:
        raise PipelineError(f"{INSTALL_HINT} ({exc})") from None
    return ray

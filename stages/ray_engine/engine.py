"""Stage one on Ray Data: an engine for ``stages.extract.run``, like the local one.

The engine plans the stages from the cluster's resources, asks a worker shaped like an actor for the store
identity its features will have, streams the to-do videos through Ray Data and yields finished videos as
they come back; the driver commits them with the store's one writer, as for the local engine. Videos
already complete in the store are left out before the dataset is built, so a rerun after any failure (a
task's, an actor's, the driver's) continues.

    entry rows --(CPU tasks: FaceStage)--> crops --(actor pool: Embedder)--> features --> the driver
On GPUs (``--ray-detect actors``, the default there) one actor pool runs the local engine itself: see
``workers``.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import warnings
from collections import defaultdict
from typing import Iterable, Iterator, Sequence

from features.writer import VideoResult
from pipeline.core.errors import PipelineError
from stages.ray_engine import rows, workers
from stages.ray_engine.cluster import Plan, connect, make_plan
from stages.ray_engine.config import RayConfig, require_ray

log = logging.getLogger(__name__)
# Input blocks: one video per block for runs up to this size, so a retried task redoes one video; above it
# videos share blocks, so 120,000 videos do not become 120,000 objects held by the driver.
MAX_BLOCKS = 4096


def probe(ray, cfg, faces, plan: Plan, retries: int) -> tuple[object, dict]:
    """Identity, provenance and precision from a worker shaped like an actor; the actors' config."""
    cfg = dataclasses.replace(cfg, device=plan.device)
    task = ray.remote(num_cpus=plan.actor_cpus, num_gpus=plan.actor_gpus, max_retries=retries)(workers.probe)
    found = ray.get(task.remote(cfg, faces))
    return dataclasses.replace(cfg, precision=found["precision"]), found


def quiet_ray_data(ray) -> None:
    """Our progress bar and table report the run: drop Ray Data's own bars and per-run INFO lines (its
    warnings still show; its full logs stay in the session's logs/ray-data folder)."""
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    for name, level in (("ray.data._internal.progress", logging.ERROR),   # "progress bars disabled"
                        ("ray.data._internal.execution.streaming_executor", logging.WARNING)):
        logging.getLogger(name).setLevel(level)


def build(ray, todo: Sequence, cfg, faces, rcfg: RayConfig, plan: Plan, faults: tuple) -> Iterable[dict]:
    """The Ray Data pipeline over ``todo``; yields result batches (``rows``) as they finish."""
    from ray.data import ActorPoolStrategy
    quiet_ray_data(ray)
    items = rows.entry_rows(todo)
    ds = ray.data.from_items(items, override_num_blocks=min(len(items), MAX_BLOCKS))
    actors = {"compute": ActorPoolStrategy(min_size=plan.actors[0], max_size=plan.actors[1]),
              "batch_size": plan.batch, "num_cpus": plan.actor_cpus, "num_gpus": plan.actor_gpus}
    if plan.detect == "tasks":
        # The explicit max_retries also keeps Ray Data from fusing these tasks into the actors (it fuses
        # only stages with equal remote arguments): the CPU work must run in parallel tasks, not in the pool.
        # Ray 2.60 warns that such arguments go in 2.64; the pin in pyproject.toml keeps this working.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
            ds = ds.map_batches(workers.prepare_batch, batch_size=1, num_cpus=1,
                                max_retries=rcfg.ray_max_retries,
                                fn_kwargs={"cfg": cfg, "faces": faces, "faults": faults})
        ds = ds.map_batches(workers.EmbedActor, fn_constructor_kwargs={"cfg": cfg, "faces": faces,
                                                                       "faults": faults}, **actors)
    else:
        ds = ds.map_batches(workers.FusedActor, fn_constructor_kwargs={
            "cfg": cfg, "faces": faces, "faults": faults, "decode_threads": plan.decode_threads}, **actors)
    return ds.iter_batches(batch_size=None, batch_format="numpy")


class Tally:
    """Where the work ran and what it cost, from the per-video trace columns."""

    def __init__(self):
        self.nodes: dict[str, dict[str, int]] = defaultdict(lambda: {"task": 0, "actor": 0})
        self.seconds = {"task": 0.0, "actor": 0.0}
        self.videos = 0

    def add(self, batch: dict) -> None:
        for i in range(len(batch["video_id"])):
            for stage in ("task", "actor"):
                node = str(batch[f"{stage}_node"][i])
                if node:
                    self.nodes[node][stage] += 1
                self.seconds[stage] += float(batch[f"{stage}_seconds"][i])
            self.videos += 1

    def summary(self) -> dict:
        n = max(self.videos, 1)
        return {"work_per_node": {k: dict(v) for k, v in self.nodes.items()},
                "seconds_per_video": {k: round(v / n, 4) for k, v in self.seconds.items()}}


class RayEngine:
    """``with RayEngine(cfg, faces, rcfg) as engine: for batch in engine.results(todo): ...``"""

    name = "ray"

    def __init__(self, cfg, faces, rcfg: RayConfig):
        self.cfg, self.faces, self.rcfg = cfg, faces, rcfg
        self.ray = require_ray()
        self.faults = workers.parse_faults(os.environ.get(workers.KILL_ENV, ""))
        self._connection = None
        self.tally = Tally()

    def __enter__(self) -> "RayEngine":
        self._connection = connect(self.rcfg)
        cluster = self._connection.__enter__()
        try:
            self.plan = make_plan(self.rcfg, self.cfg, cluster)
            log.info("ray %s at %s: %d node(s), %g CPU, %g GPU; %s", self.ray.__version__, cluster.address,
                     len(cluster.nodes), cluster.cpus, cluster.gpus, self.plan.text())
            self.worker_cfg, self.found = probe(self.ray, self.cfg, self.faces, self.plan, self.rcfg.ray_max_retries)
        except BaseException:
            self._connection.__exit__(None, None, None)
            raise
        self.info = {"engine": "ray", "ray_version": self.ray.__version__, "address": cluster.address,
                     "nodes": len(cluster.nodes), "cpus": cluster.cpus, "gpus": cluster.gpus,
                     "plan": self.plan.describe(), "precision": self.found["precision"]}
        return self

    def __exit__(self, *exc) -> None:
        if self._connection is not None:
            self._connection.__exit__(*exc)
            self._connection = None

    def identity(self) -> dict:
        return self.found["identity"]

    def provenance(self, extra: dict | None = None) -> dict:
        return {**self.found["provenance"], **(extra or {}), "extraction_engine": self.info}

    def summary(self) -> dict:
        return {**self.info, **self.tally.summary()}

    def results(self, todo: Sequence) -> Iterator[list[VideoResult]]:
        batches = build(self.ray, todo, self.worker_cfg, self.faces, self.rcfg, self.plan, self.faults)
        try:
            for batch in batches:
                self.tally.add(batch)
                yield rows.results_of(batch)
        except self.ray.exceptions.RayError as exc:
            log.error("the Ray pipeline failed", exc_info=True)
            raise PipelineError(f"the Ray run stopped ({one_line(exc)}); every video committed so far is "
                                "kept: run the same command to continue") from exc


def one_line(exc: BaseException) -> str:
    """The error a Ray task raised (not Ray's wrapper with its coloured task name), on one line."""
    cause = getattr(exc, "cause", None) or exc
    text = next((ln.strip() for ln in str(cause).splitlines() if ln.strip()), "")
    return f"{type(cause).__name__}: {text}"[:300]

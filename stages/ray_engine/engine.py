"""Stage one on Ray Data. The driver plans the stages from the cluster's resources, streams the to-do videos
through them and, as finished videos stream back, commits them with the local engine's StoreWriter: one
writer, the same crash-safe commits, the same provenance. Videos already complete in the store are left out
before the dataset is built, so a rerun after any failure (a task's, an actor's, the driver's) continues.

    entry rows --(CPU tasks: decode, detect, track, crop)--> crops --(actor pool: ResNet50)--> features
               --(driver: StoreWriter.commit)--> store.h5
On GPUs (``--ray-detect actors``, the default there) one actor pool does all of it: see ``workers``.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from features.writer import StoreWriter, WriterLock
from pipeline.errors import PipelineError
from stages.extract import RunStats, commit_batch, start_run
from stages.ray_engine import rows, workers
from stages.ray_engine.cluster import Plan, connect, make_plan
from stages.ray_engine.config import RayConfig, require_ray

log = logging.getLogger(__name__)
# Input blocks: one video per block for runs up to this size, so a retried task redoes one video; above it
# videos share blocks, so 120,000 videos do not become 120,000 objects held by the driver.
MAX_BLOCKS = 4096


@dataclass
class RayRunStats(RunStats):
    ray: dict = field(default_factory=dict)   # cluster, plan, work per node, seconds per stage


def check_unlocked(store: Path) -> None:
    """Fail before starting Ray when another process is writing the store (the writer takes it later)."""
    lock = WriterLock(store)
    lock.acquire()
    lock.release()


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
        self.duplicates = 0

    def add(self, batch: dict, keep: Sequence[int]) -> None:
        for i in keep:
            for stage in ("task", "actor"):
                node = str(batch[f"{stage}_node"][i])
                if node:
                    self.nodes[node][stage] += 1
                self.seconds[stage] += float(batch[f"{stage}_seconds"][i])
            self.videos += 1

    def summary(self) -> dict:
        n = max(self.videos, 1)
        return {"work_per_node": {k: dict(v) for k, v in self.nodes.items()},
                "seconds_per_video": {k: round(v / n, 4) for k, v in self.seconds.items()},
                "duplicates_dropped": self.duplicates}


def consume(batches: Iterable[dict], writer: StoreWriter, stats: RayRunStats, progress, task) -> Tally:
    """Commit finished videos as they stream in; a video Ray delivered twice (a retry) is written once."""
    tally, seen = Tally(), set()
    t0 = time.perf_counter()
    for batch in batches:
        results, keep = [], []
        for i, res in enumerate(rows.results_of(batch)):
            if res.video_id in seen:
                tally.duplicates += 1
                continue
            seen.add(res.video_id)
            results.append(res)
            keep.append(i)
        commit_batch(writer, results, stats, t0, progress, task)
        tally.add(batch, keep)
    return tally


def run(cfg, faces, rcfg: RayConfig, entries: Sequence, store: str | Path, *, new: bool = False,
        retry_failed: bool = False, provenance_extra: dict | None = None, manifest_sha256: str = "",
        quiet: bool = False) -> tuple[Path, RayRunStats]:
    """``stages.extract.run`` on Ray: extract ``entries`` into ``store``, skipping videos already there."""
    from pipeline.ui import video_progress
    ray = require_ray()
    store = Path(store)
    check_unlocked(store)
    faults = workers.parse_faults(os.environ.get(workers.KILL_ENV, ""))
    with connect(rcfg) as cluster:
        plan = make_plan(rcfg, cfg, cluster)
        log.info("ray %s at %s: %d node(s), %g CPU, %g GPU; %s", ray.__version__, cluster.address,
                 len(cluster.nodes), cluster.cpus, cluster.gpus, plan.text())
        worker_cfg, found = probe(ray, cfg, faces, plan, rcfg.ray_max_retries)
        info = {"engine": "ray", "ray_version": ray.__version__, "address": cluster.address,
                "nodes": len(cluster.nodes), "cpus": cluster.cpus, "gpus": cluster.gpus, "plan": plan.describe(),
                "precision": found["precision"]}
        prov = {**found["provenance"], **(provenance_extra or {}), "extraction_engine": info}
        with StoreWriter(store, prov, found["identity"], entries, new=new) as writer:
            todo = start_run(writer, entries, manifest_sha256, retry_failed)
            stats = RayRunStats(total=len(entries), skipped=len(entries) - len(todo), ray=info)
            with video_progress(disable=quiet) as progress:
                bar = progress.add_task("features (ray)", total=len(todo), frames=0, seconds=0.0)
                if todo:
                    try:
                        tally = consume(build(ray, todo, worker_cfg, faces, rcfg, plan, faults), writer, stats,
                                        progress, bar)
                    except ray.exceptions.RayError as exc:
                        log.error("the Ray pipeline failed", exc_info=True)
                        raise PipelineError(f"the Ray run stopped ({one_line(exc)}); every video committed so "
                                            "far is kept: run the same command to continue") from exc
                    info.update(tally.summary())
    return store, stats


def one_line(exc: BaseException) -> str:
    """The error a Ray task raised (not Ray's wrapper with its coloured task name), on one line."""
    cause = getattr(exc, "cause", None) or exc
    text = next((ln.strip() for ln in str(cause).splitlines() if ln.strip()), "")
    return f"{type(cause).__name__}: {text}"[:300]


def report_rows(stats: RayRunStats) -> list[tuple[str, object]]:
    """Rows for the end-of-run table, after ``stages.extract.stats_rows``."""
    r = stats.ray
    if not r:
        return []
    plan = Plan(**{**r["plan"], "actors": tuple(r["plan"]["actors"])})
    out = [("engine", f"ray {r['ray_version']} at {r['address']}: {r['nodes']} node(s), {r['cpus']:g} CPU, "
                      f"{r['gpus']:g} GPU"),
           ("plan", f"{plan.text()}; backbone in {r['precision']}")]
    for node, work in sorted(r.get("work_per_node", {}).items()):
        out.append((f"  node {node[:12]}", f"{work['task']} videos in tasks, {work['actor']} in actors"))
    secs = r.get("seconds_per_video")
    if secs:
        out.append(("worker seconds per video", f"tasks {secs['task']:.3f} (decode, detect, crop), "
                                                f"actors {secs['actor']:.3f}"))
    if r.get("duplicates_dropped"):
        out.append(("duplicates dropped", r["duplicates_dropped"]))
    return out

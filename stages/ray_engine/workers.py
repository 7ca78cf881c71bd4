"""The code Ray runs on the workers: the local engine's per-video functions, wrapped as Ray Data stages.

- ``prepare_batch`` (CPU task): ``stages.preprocess.FaceStage``: decode -> detect -> track -> crop.
- ``EmbedActor`` (actor pool): the backbone, loaded once per actor, over the crops of a batch of videos.
- ``FusedActor`` (actor pool, for GPUs): the local engine itself (``stages.local_engine``), decoding several
  videos at once: detection runs batched on the actor's GPU and full frames never leave the process that
  decoded them.

Test-only fault injection (``PIPELINE_TEST_RAY_KILL``, read by the driver and handed to the stages):
``STAGE:SEQ:MARKER[,...]`` makes the process that handles video number SEQ of the run's to-do list in STAGE
(``task`` or ``actor``) exit at once, the first time only (MARKER is created then), as a crashed worker or a
lost node would. Ray retries the task or restarts the actor and the run must still complete.
"""
from __future__ import annotations

import json
import logging
import os
import time
from typing import Sequence

import numpy as np
import torch

from pipeline.core.config import to_dict
from stages.backbone import FEATURE_DIM
from stages.local_engine import CpuBudget, LocalEngine
from stages.preprocess import FaceStage, FramePipeline
from stages.ray_engine import rows

log = logging.getLogger(__name__)
KILL_ENV = "PIPELINE_TEST_RAY_KILL"
_CACHE: dict[str, object] = {}   # per worker process: Ray reuses task workers, so models load once


def cached(kind: type, cfg, faces):
    """One ``kind(cfg, faces)`` per worker process (a FaceStage for tasks: no backbone, ~100 MB less)."""
    key = json.dumps([kind.__name__, to_dict(cfg), to_dict(faces)], sort_keys=True)
    if key not in _CACHE:
        _CACHE[key] = kind(cfg, faces)
    return _CACHE[key]


def node_id() -> str:
    import ray
    return ray.get_runtime_context().get_node_id()


def parse_faults(spec: str) -> tuple[tuple[str, int, str], ...]:
    out = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        stage, seq, marker = part.split(":", 2)
        if stage not in ("task", "actor"):
            raise ValueError(f"{KILL_ENV}: stage must be task or actor, got {stage!r}")
        out.append((stage, int(seq), marker))
    return tuple(out)


def maybe_die(faults: Sequence[tuple[str, int, str]], stage: str, seqs) -> None:
    """Test only: exit this worker process abruptly once, when it reaches the chosen video."""
    for kind, seq, marker in faults:
        if kind == stage and seq in {int(s) for s in seqs}:
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                continue   # already killed once: this is Ray's retry, let it through
            log.warning("test fault injection: %s worker exits on video %d", stage, seq)
            os._exit(1)


def prepare_batch(batch: dict, cfg, faces, faults=()) -> dict:
    """CPU task: entry rows -> prepared rows (crops, boxes, mask, status); see ``rows``."""
    stage = cached(FaceStage, cfg, faces)
    maybe_die(faults, "task", batch["seq"])
    prepared, seconds = [], []
    for entry in rows.entries_of(batch):
        t0 = time.perf_counter()
        prepared.append(stage.run(entry))
        seconds.append(time.perf_counter() - t0)
    n = len(prepared)
    trace = {"seq": batch["seq"], "task_node": np.array([node_id()] * n, dtype=object),
             "task_seconds": np.array(seconds)}
    return rows.prepared_batch(prepared, cfg.frames, cfg.crop, FEATURE_DIM, trace)


class EmbedActor:
    """Actor: ResNet50 over the crops of a batch of prepared videos (model loaded once per actor)."""

    def __init__(self, cfg, faces, faults=()):
        self.pipe = FramePipeline(cfg, faces)
        self.faults = faults
        self.node = node_id()

    def __call__(self, batch: dict) -> dict:
        maybe_die(self.faults, "actor", batch["seq"])
        t0 = time.perf_counter()
        results = self.pipe.embed(rows.prepared_of(batch))
        n = len(results)
        trace = {**{k: batch[k] for k in ("seq", "task_node", "task_seconds")},
                 "actor_node": np.array([self.node] * n, dtype=object),
                 "actor_seconds": np.full(n, (time.perf_counter() - t0) / max(n, 1))}
        return rows.result_batch(results, self.pipe.cfg.frames, FEATURE_DIM, trace)


class FusedActor:
    """Actor: the whole local path for a batch of videos, decoding ``decode_threads`` videos at once."""

    def __init__(self, cfg, faces, faults=(), decode_threads: int = 1):
        # the actor's CPUs as Ray reserved them (Ray sets the worker's torch threads to match)
        budget = CpuBudget(decode_threads, decode_threads, 1, torch.get_num_threads())
        self.engine = LocalEngine(cfg, faces, budget=budget)
        self.pipe = self.engine.pipe
        self.faults = faults
        self.node = node_id()

    def __call__(self, batch: dict) -> dict:
        maybe_die(self.faults, "actor", batch["seq"])
        t0 = time.perf_counter()
        results = [r for chunk in self.engine.results(rows.entries_of(batch)) for r in chunk]
        n = len(results)   # results come out in input order, so the trace columns still line up
        trace = {"seq": batch["seq"], "task_node": np.array([""] * n, dtype=object), "task_seconds": np.zeros(n),
                 "actor_node": np.array([self.node] * n, dtype=object),
                 "actor_seconds": np.full(n, (time.perf_counter() - t0) / max(n, 1))}
        return rows.result_batch(results, self.pipe.cfg.frames, FEATURE_DIM, trace)


def probe(cfg, faces) -> dict:
    """Run where an actor would run: the store's identity and provenance as the actors will see them, and
    the precision they must all use (``auto`` is resolved once here, so every actor embeds alike)."""
    pipe = FramePipeline(cfg, faces)
    return {"identity": pipe.identity(), "provenance": pipe.provenance(), "precision": pipe.embedder.precision,
            "node": node_id()}

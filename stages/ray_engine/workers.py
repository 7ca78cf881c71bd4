"""The code Ray runs on the workers: the local engine's per-video functions, wrapped as Ray Data stages.

- ``prepare_batch`` (CPU task): decode -> detect -> track -> crop, exactly ``stages.preprocess``'s path.
- ``EmbedActor`` (actor pool): the backbone, loaded once per actor, over the crops of a batch of videos.
- ``FusedActor`` (actor pool, for GPUs): decode (several ffmpeg processes at once) -> detect -> crop ->
  embed in one process, through ``stages.extract.results``: detection runs batched on the actor's GPU and
  full frames still never leave the process that decoded them.

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
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from typing import Iterator, Sequence

import numpy as np

from pipeline.config import to_dict
from stages import extract
from stages.backbone import FEATURE_DIM
from stages.faces import FaceDetector
from stages.media import MediaError
from stages.preprocess import FramePipeline, Prepared, prepare_entry
from stages.ray_engine import rows

log = logging.getLogger(__name__)
KILL_ENV = "PIPELINE_TEST_RAY_KILL"
_PIPES: dict[str, FramePipeline] = {}   # per worker process: Ray reuses task workers, so models load once


class CropPipeline(FramePipeline):
    """FramePipeline's decode/detect/crop half (the same methods), without loading the backbone: CPU tasks
    never embed, and a ResNet50 per task worker would cost ~100 MB of memory each for nothing."""

    def __init__(self, cfg, faces):   # deliberately not FramePipeline.__init__: no Embedder
        self.cfg, self.faces = cfg, faces
        self.detector = FaceDetector(faces, device="cpu")


def cached_pipeline(kind: type, cfg, faces) -> FramePipeline:
    key = json.dumps([kind.__name__, to_dict(cfg), to_dict(faces)], sort_keys=True)
    if key not in _PIPES:
        _PIPES[key] = kind(cfg, faces)
    return _PIPES[key]


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


def prepare_one(pipe: FramePipeline, entry) -> Prepared:
    """Decode and prepare one video; a bad file becomes a recorded failure, as in the local engine."""
    try:
        sampled = pipe.decode(entry.path)
    except MediaError as exc:
        sampled = exc
    return prepare_entry(pipe, entry, sampled)


def prepare_batch(batch: dict, cfg, faces, faults=()) -> dict:
    """CPU task: entry rows -> prepared rows (crops, boxes, mask, status); see ``rows``."""
    pipe = cached_pipeline(CropPipeline, cfg, faces)
    maybe_die(faults, "task", batch["seq"])
    prepared, seconds = [], []
    for entry in rows.entries_of(batch):
        t0 = time.perf_counter()
        prepared.append(prepare_one(pipe, entry))
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


def decode_parallel(pipe: FramePipeline, entries: Sequence, workers: int) -> Iterator[tuple]:
    """(entry, SampledFrames | MediaError) in input order, up to ``workers`` ffmpeg processes at once; at
    most ``workers + 1`` decoded videos are held (ffmpeg runs outside the GIL, so threads suffice)."""
    def one(entry):
        try:
            return pipe.decode(entry.path)
        except MediaError as exc:
            return exc

    it = iter(entries)
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="decode") as pool:
        pending = deque((e, pool.submit(one, e)) for e in islice(it, max(1, workers)))
        while pending:
            entry, future = pending.popleft()
            nxt = next(it, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(one, nxt)))
            yield entry, future.result()


class FusedActor:
    """Actor: the whole local path for a batch of videos, decoding ``decode_threads`` videos at once."""

    def __init__(self, cfg, faces, faults=(), decode_threads: int = 1):
        self.pipe = FramePipeline(cfg, faces)
        self.faults, self.threads = faults, decode_threads
        self.node = node_id()

    def __call__(self, batch: dict) -> dict:
        maybe_die(self.faults, "actor", batch["seq"])
        t0 = time.perf_counter()
        entries = rows.entries_of(batch)
        source = decode_parallel(self.pipe, entries, self.threads)
        results = [r for chunk in extract.results(self.pipe, entries, source=source) for r in chunk]
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

"""The local engine: stage one in this process, decoding ahead on worker threads while the main thread
detects, crops and embeds.

``results(todo)`` yields finished videos in input order, in small batches: a batch closes when it holds
``batch_size`` crops (one backbone call) or when waiting for one more video would keep its oldest video
past ``max_latency`` seconds (judged from the mean time per video so far), so the driver commits at least
every few seconds, and every video when videos are slow: a run that lives long enough to finish one video
keeps it. At most ``decode_workers + prefetch`` decoded videos are held, so memory stays
flat however large the dataset. ffmpeg runs outside the GIL, so threads are enough to overlap it.

A ``progress`` listener hears where each video is: ``update(STAGE, video_id=..., stage=...)`` with
``decoding`` (from the decode thread, when its ffmpeg starts), ``detecting`` and ``embedding``; the web
service shows these per job.
"""
from __future__ import annotations

import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from itertools import islice
from typing import Iterator, Sequence

import torch

from features.writer import VideoResult
from pipeline.core.progress import SILENT, Progress
from pipeline.core.videos import VideoEntry
from stages.preprocess import FaceStage, FeatureConfig, FramePipeline, Prepared
from stages.faces import FaceConfig

MAX_LATENCY = 1.0   # seconds a finished-but-unembedded video may wait for its batch to fill
STAGE = "stage"     # progress key of the per-video events: fields video_id and stage
DECODING, DETECTING, EMBEDDING = "decoding", "detecting", "embedding"


@dataclass(frozen=True)
class CpuBudget:
    """How the cores are shared, so that decoding overlaps detection and the backbone instead of competing:
    ``decode_workers`` ffmpeg processes at once with ``ffmpeg_threads`` threads each (0: ffmpeg's own
    choice), and ``torch_threads`` for detection and the backbone."""
    cores: int
    decode_workers: int
    ffmpeg_threads: int
    torch_threads: int

    def describe(self) -> dict:
        return asdict(self)


def cpu_budget(device: str = "cpu", cores: int | None = None) -> CpuBudget:
    """The budget for this machine. Up to 4 cores one video decodes ahead of the one being detected and
    embedded, with one ffmpeg thread (decoding a 1080p H.264 clip gained little from a second thread here,
    and that thread is the core the other video needs); above that, one decoding video per 4 cores with 2
    threads each (a 16-core GPU box decodes 4 at once: the GPU waits on decoding, not the reverse). Torch
    gets every core: its threads sleep while ffmpeg runs."""
    if not cores:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if cores <= 4:
        return CpuBudget(cores, 1, 1 if cores <= 2 else 2, cores)
    return CpuBudget(cores, max(1, cores // 4), 2, cores if device == "cpu" else max(1, cores // 2))


def _decode(stage: FaceStage, entry: VideoEntry, progress: Progress):
    progress.update(STAGE, video_id=entry.video_id, stage=DECODING)
    return stage.decode(entry.path)


def decode_ahead(stage: FaceStage, entries: Sequence[VideoEntry], workers: int, depth: int,
                 progress: Progress = SILENT) -> Iterator[tuple]:
    """(entry, SampledFrames | MediaError) in input order, ``workers`` ffmpeg processes at once and at most
    ``depth`` videos decoded ahead of the consumer."""
    it = iter(entries)
    ahead = max(1, workers, depth)
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="decode") as pool:
        pending = deque((e, pool.submit(_decode, stage, e, progress)) for e in islice(it, ahead))
        try:
            while pending:
                entry, future = pending.popleft()
                nxt = next(it, None)
                if nxt is not None:
                    pending.append((nxt, pool.submit(_decode, stage, nxt, progress)))
                yield entry, future.result()
        finally:
            for _, future in pending:      # the consumer stopped early: drop what was not started
                future.cancel()


class LocalEngine:
    """``with LocalEngine(cfg, faces) as engine: for batch in engine.results(todo): ...``"""

    name = "local"

    def __init__(self, cfg: FeatureConfig, faces: FaceConfig, pipe: FramePipeline | None = None,
                 budget: CpuBudget | None = None, max_latency: float = MAX_LATENCY):
        self.cfg, self.faces = cfg, faces
        self.pipe = pipe or FramePipeline(cfg, faces)
        self.budget = budget or cpu_budget(str(self.pipe.embedder.device.type))
        self.max_latency = max_latency
        torch.set_num_threads(self.budget.torch_threads)
        self.pipe.stage.ffmpeg_threads = self.budget.ffmpeg_threads

    def __enter__(self) -> "LocalEngine":
        return self

    def __exit__(self, *exc) -> None:
        pass

    def identity(self) -> dict:
        return self.pipe.identity()

    def describe(self) -> dict:
        return {"engine": self.name, **self.budget.describe(), "prefetch": self.cfg.prefetch,
                "max_latency_s": self.max_latency,
                # set by the command line for stage one (pipeline.cli.STAGE_ONE_COMMANDS) before torch loads
                "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "") or "default"}

    def provenance(self, extra: dict | None = None) -> dict:
        return {**self.pipe.provenance(extra), "extraction_engine": self.describe()}

    def summary(self) -> dict:
        return {}

    def results(self, todo: Sequence[VideoEntry], keep_crops: bool = False,
                progress: Progress = SILENT) -> Iterator[list[VideoResult]]:
        """Finished videos in input order; ``keep_crops`` leaves each one's face crops on ``result.crops``;
        ``progress`` hears each video's stage (module docstring)."""
        batch: list[Prepared] = []
        crops, since, started, seen = 0, 0.0, time.monotonic(), 0
        for entry, sampled in decode_ahead(self.pipe.stage, todo, self.budget.decode_workers, self.cfg.prefetch,
                                           progress):
            progress.update(STAGE, video_id=entry.video_id, stage=DETECTING)
            prepared = self.pipe.stage.prepare(entry, sampled)
            if keep_crops:
                prepared.result.crops = prepared.crops
            now = time.monotonic()
            seen += 1
            if not batch:
                since = now
            batch.append(prepared)
            crops += 0 if prepared.crops is None else len(prepared.crops)
            per_video = (now - started) / seen
            if crops >= self.cfg.batch_size or now - since + per_video >= self.max_latency:
                yield self._embed(batch, progress)
                batch, crops = [], 0
        if batch:
            yield self._embed(batch, progress)

    def _embed(self, batch: list[Prepared], progress: Progress) -> list[VideoResult]:
        for p in batch:
            progress.update(STAGE, video_id=p.result.video_id, stage=EMBEDDING)
        return self.pipe.embed(batch)

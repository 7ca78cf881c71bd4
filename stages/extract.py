"""Stage one's driver: a dataset's videos -> the HDF5 feature store, whatever engine does the work.

    with WriterLock(store) as lock, engine:
        with StoreWriter(store, engine.provenance(), engine.identity(), entries, lock=lock) as writer:
            stats = extract.run(writer, engine, entries, progress=...)

An engine (``stages.local_engine.LocalEngine``, ``stages.ray_engine.RayEngine``) knows the store identity its
features will have and yields finished videos; the driver records the manifest, skips what the store holds
already, commits each batch the engine yields (the store's crash-safe protocol), counts, and reports
progress through callbacks. It prints nothing.
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from features import schema
from features.writer import StoreWriter, VideoResult
from pipeline.core.progress import SILENT, Progress
from pipeline.core.videos import VideoEntry

log = logging.getLogger(__name__)
TASK = "features"


@dataclass
class RunStats:
    total: int = 0
    skipped: int = 0
    done: int = 0
    no_face: int = 0
    failed: Counter = field(default_factory=Counter)
    frames: int = 0
    faces: int = 0
    seconds: float = 0.0
    duplicates: int = 0
    engine: dict = field(default_factory=dict)   # what the engine reports about its run (Ray: nodes, plan)

    def add(self, res: VideoResult) -> None:
        if res.status == schema.FAILED:
            self.failed[res.reason] += 1
            return
        self.done += 1
        self.no_face += res.status == schema.NO_FACE
        self.frames += int((res.frame_index >= 0).sum())
        self.faces += int(res.mask.sum())


def start_run(writer: StoreWriter, entries: Sequence[VideoEntry], manifest_sha256: str,
              retry_failed: bool) -> list[VideoEntry]:
    """Record the manifest, apply its label/split changes to stored videos, and return what is left to do."""
    if manifest_sha256:
        writer.set_manifest_sha256(manifest_sha256)
    relabelled = writer.sync_metadata(entries)
    if relabelled:
        log.info("updated label/split/group of %d stored videos from the manifest", relabelled)
    todo = writer.todo(entries, retry_failed)
    log.info("extracting %d videos (%d of %d already in %s)", len(todo), len(entries) - len(todo), len(entries),
             writer.path)
    return todo


def commit(writer: StoreWriter, batch: Iterable[VideoResult], stats: RunStats, seen: set[str]) -> int:
    """Commit a batch of finished videos (a video an engine delivers twice, e.g. a retried Ray task, is
    written once), count them, log failures; returns how many were new."""
    fresh = []
    for res in batch:
        if res.video_id in seen:
            stats.duplicates += 1
            continue
        seen.add(res.video_id)
        fresh.append(res)
    writer.commit(fresh)
    for res in fresh:
        stats.add(res)
        if res.status == schema.FAILED:
            log.warning("%s: %s", res.video_id, res.reason)
    return len(fresh)


def run(writer: StoreWriter, engine, entries: Sequence[VideoEntry], *, retry_failed: bool = False,
        manifest_sha256: str = "", progress: Progress = SILENT) -> RunStats:
    """Extract every video of ``entries`` not yet complete in the store; returns the run's statistics."""
    todo = start_run(writer, entries, manifest_sha256, retry_failed)
    stats = RunStats(total=len(entries), skipped=len(entries) - len(todo))
    progress.start(TASK, total=len(todo), frames=0, seconds=0.0)
    t0, seen = time.perf_counter(), set()
    if todo:
        for batch in engine.results(todo):
            n = commit(writer, batch, stats, seen)
            stats.seconds = time.perf_counter() - t0
            progress.update(TASK, advance=n, frames=stats.frames, seconds=stats.seconds)
    stats.engine = engine.summary()
    return stats

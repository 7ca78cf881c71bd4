"""Stage one: a dataset's videos -> the HDF5 feature store (resumable, crash-safe, overlapped).

A decode thread runs ffmpeg for the next videos (a bounded queue keeps at most ``prefetch`` decoded videos
in memory) while the main thread detects faces, crops and runs the backbone, and commits each backbone
batch to the store. Memory stays flat however many videos there are.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from features import schema
from features.writer import StoreWriter, VideoResult
from stages.media import MediaError
from stages.preprocess import FramePipeline, Prepared, prepare_entry

log = logging.getLogger(__name__)
_DONE = object()


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

    def add(self, res: VideoResult) -> None:
        if res.status == schema.FAILED:
            self.failed[res.reason] += 1
            return
        self.done += 1
        self.no_face += res.status == schema.NO_FACE
        self.frames += int((res.frame_index >= 0).sum())
        self.faces += int(res.mask.sum())


def decoded(pipe: FramePipeline, entries: Sequence, depth: int, stop: threading.Event) -> Iterator:
    """(entry, SampledFrames | MediaError) in order, decoded by a background thread ``depth`` ahead."""
    q: queue.Queue = queue.Queue(maxsize=depth)

    def work() -> None:
        for entry in entries:
            if stop.is_set():
                break
            try:
                item = pipe.decode(entry.path)
            except MediaError as exc:
                item = exc
            q.put((entry, item))
        q.put(_DONE)

    thread = threading.Thread(target=work, name="decode", daemon=True)
    thread.start()
    try:
        while (item := q.get()) is not _DONE:
            yield item
    finally:
        stop.set()
        while thread.is_alive():   # unblock the producer if it waits on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(0.05)


def results(pipe: FramePipeline, entries: Sequence, depth: int = 2, source: Iterable | None = None,
            keep_crops: bool = False) -> Iterator[list[VideoResult]]:
    """Batches of finished videos; a batch closes when it holds ``batch_size`` crops or input ends.
    ``source`` replaces the decode thread with another iterable of (entry, SampledFrames | MediaError);
    ``keep_crops`` leaves each video's face crops on ``result.crops`` (for explanations)."""
    stop = threading.Event()
    batch: list[Prepared] = []
    crops = 0
    for entry, sampled in (decoded(pipe, entries, depth, stop) if source is None else source):
        prepared = prepare_entry(pipe, entry, sampled)
        if keep_crops:
            prepared.result.crops = prepared.crops
        batch.append(prepared)
        crops += 0 if prepared.crops is None else len(prepared.crops)
        if crops >= pipe.cfg.batch_size:
            yield pipe.embed(batch)
            batch, crops = [], 0
    if batch:
        yield pipe.embed(batch)


def extract(pipe: FramePipeline, writer: StoreWriter, todo: Sequence, progress=None, task=None,
            stats: RunStats | None = None) -> RunStats:
    """Run every video of ``todo`` through the pipeline and commit them; returns the run's statistics."""
    stats = stats or RunStats()
    t0 = time.perf_counter()
    for batch in results(pipe, todo, pipe.cfg.prefetch):
        commit_batch(writer, batch, stats, t0, progress, task)
    return stats


def commit_batch(writer: StoreWriter, batch: Sequence[VideoResult], stats: RunStats, t0: float,
                 progress=None, task=None) -> None:
    """Commit finished videos, count them, log failures and move the progress bar (every engine)."""
    writer.commit(batch)
    for res in batch:
        stats.add(res)
        if res.status == schema.FAILED:
            log.warning("%s: %s", res.video_id, res.reason)
    stats.seconds = time.perf_counter() - t0
    if progress is not None:
        progress.update(task, advance=len(batch), frames=stats.frames, seconds=stats.seconds)


def start_run(writer: StoreWriter, entries: Sequence, manifest_sha256: str, retry_failed: bool) -> list:
    """Record the manifest, apply its label/split changes to stored videos, and return what is left to do."""
    if manifest_sha256:
        writer.set_manifest_sha256(manifest_sha256)
    relabelled = writer.sync_metadata(entries)
    if relabelled:
        log.info("updated label/split/group of %d stored videos from the manifest", relabelled)
    todo = writer.todo(entries, retry_failed)
    if len(todo) < len(entries):
        log.info("%d of %d videos already in %s: skipped", len(entries) - len(todo), len(entries), writer.path)
    return todo


def run(cfg, faces, entries: Sequence, store: str | Path, *, new: bool = False, retry_failed: bool = False,
        provenance_extra: dict | None = None, manifest_sha256: str = "", quiet: bool = False) -> tuple[Path, RunStats]:
    """Extract features of ``entries`` into ``store``; skips videos already complete there."""
    from pipeline.ui import video_progress
    store = Path(store)
    pipe = FramePipeline(cfg, faces)
    with StoreWriter(store, pipe.provenance(provenance_extra), pipe.identity(), entries, new=new) as writer:
        todo = start_run(writer, entries, manifest_sha256, retry_failed)
        stats = RunStats(total=len(entries), skipped=len(entries) - len(todo))
        with video_progress(disable=quiet) as progress:
            task = progress.add_task("features", total=len(todo), frames=0, seconds=0.0)
            extract(pipe, writer, todo, progress, task, stats)
    return store, stats


def stats_rows(stats: RunStats) -> list[tuple[str, object]]:
    rows = [("videos in manifest", stats.total), ("already stored (skipped)", stats.skipped),
            ("extracted", stats.done), ("  of which no face", stats.no_face),
            ("failed", sum(stats.failed.values()))]
    rows += [(f"  {reason}", n) for reason, n in stats.failed.most_common()]
    if stats.frames:
        rows.append(("face coverage", f"{stats.faces / stats.frames:.1%} of {stats.frames} sampled frames"))
    if stats.seconds:
        n = stats.done + sum(stats.failed.values())
        rows.append(("throughput", f"{n / stats.seconds:.2f} videos/s, {stats.frames / stats.seconds:.1f} "
                                   f"frames/s ({stats.seconds:.1f} s)"))
    return rows

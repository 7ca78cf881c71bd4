"""Jobs, the bounded queue, and the one worker thread that holds the models.

A job is ``queued`` when its upload is accepted, then ``decoding``, ``detecting`` and ``scoring`` as the
stage-one engine reports each stage for it (``stages.local_engine.STAGE`` events; ``scoring`` covers the
backbone, the heads and the picture), then ``done`` or ``failed``. The worker takes the oldest waiting job
and, without waiting for more, every other job already waiting (up to ``batch``) into one batched pass.

Back-pressure: at most ``queue`` jobs wait; one more is refused (``QueueFull``, answered 503 with a
Retry-After from the measured time per job) rather than accepted and left to time out. Finished jobs are
kept ``keep_minutes`` and then deleted with their folder (upload and picture).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import itertools
import logging
import math
import platform
import queue
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from pipeline.core.progress import Callback
from pipeline.serve.scoring import Scorer
from pipeline.serve.uploads import UploadDir
from stages.local_engine import DECODING, DETECTING, EMBEDDING, STAGE

log = logging.getLogger(__name__)
QUEUED, SCORING, DONE, FAILED = "queued", "scoring", "done", "failed"
STATUSES = (QUEUED, DECODING, DETECTING, SCORING, DONE, FAILED)
FRACTION = {QUEUED: 0.0, DECODING: 0.1, DETECTING: 0.3, SCORING: 0.6, DONE: 1.0, FAILED: 1.0}
FROM_ENGINE = {DECODING: DECODING, DETECTING: DETECTING, EMBEDDING: SCORING}
_order = itertools.count()


M_ARENA_MAX = -8     # glibc's mallopt parameter


def _glibc():
    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


_LIBC = _glibc()


def limit_arenas(arenas: int = 2) -> None:
    """Call before any thread starts. glibc gives each thread that allocates its own malloc arena (up to
    8 per core), and freed blocks stay in them: with a worker, decode threads and the web server's thread
    pool, a long-lived server's memory crept up by ~25 MB per 10 jobs here; with 2 arenas it stays flat."""
    if _LIBC is not None:
        _LIBC.mallopt(M_ARENA_MAX, arenas)


def trim_heap() -> None:
    """Hand freed heap memory back to the system (after each batch: its frames and crops are gone)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


class QueueFull(Exception):
    def __init__(self, retry_after: int):
        super().__init__(f"the queue is full; retry in {retry_after} s")
        self.retry_after = retry_after


@dataclass
class Job:
    id: str
    folder: Path
    video: Path
    filename: str                     # the client's name for it: shown, never used as a path
    size: int
    status: str = QUEUED
    entered: dict = field(default_factory=dict)   # status -> time.monotonic() when it began
    result: dict | None = None
    error: str = ""
    picture: Path | None = None
    submitted_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    order: int = field(default_factory=lambda: next(_order))

    def __post_init__(self) -> None:
        self.entered[QUEUED] = time.monotonic()

    def move(self, status: str) -> None:
        if status != self.status and status not in self.entered:
            self.status = status
            self.entered[status] = time.monotonic()

    @property
    def finished(self) -> bool:
        return self.status in (DONE, FAILED)

    def timings(self) -> dict:
        """Seconds spent in each status so far, and in all."""
        marks = sorted(self.entered.items(), key=lambda kv: kv[1])
        now = time.monotonic()
        out = {}
        for (status, start), nxt in zip(marks, [*marks[1:], (None, None)]):
            if status not in (DONE, FAILED):
                out[f"{status}_s"] = round((nxt[1] if nxt[1] is not None else now) - start, 3)
        end = self.entered.get(DONE, self.entered.get(FAILED, now))
        out["total_s"] = round(end - self.entered[QUEUED], 3)
        return out


class Board:
    """The jobs, their queue and the worker thread; every method is safe from any thread."""

    def __init__(self, scorer: Scorer, uploads: UploadDir, queue_size: int = 16, batch: int = 4,
                 keep_seconds: float = 3600.0):
        self.scorer, self.uploads = scorer, uploads
        self.batch, self.keep_seconds = batch, keep_seconds
        self.queue: queue.Queue[Job] = queue.Queue(maxsize=queue_size)
        self.jobs: dict[str, Job] = {}
        self.lock = threading.Lock()
        self.seconds_per_job = 5.0                # running mean, for Retry-After
        self.counts = {"accepted": 0, "refused": 0, "done": 0, "failed": 0, "expired": 0}
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="scorer", daemon=True)

    # ---- the API's side -----------------------------------------------------------------------------------
    def start(self) -> "Board":
        self.thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self.thread.join(timeout)

    def retry_after(self) -> int:
        waiting = self.queue.qsize() + 1
        return max(1, min(600, math.ceil(self.seconds_per_job * waiting)))

    def check_room(self) -> None:
        """``QueueFull`` (counted as a refusal) when no job could be queued now."""
        with self.lock:
            if self.queue.full():
                self.counts["refused"] += 1
                raise QueueFull(self.retry_after())

    def submit(self, job: Job) -> Job:
        with self.lock:
            try:
                self.queue.put_nowait(job)
            except queue.Full:
                self.counts["refused"] += 1
                raise QueueFull(self.retry_after()) from None
            self.jobs[job.id] = job
            self.counts["accepted"] += 1
        return job

    def get(self, job_id: str) -> Job | None:
        self.expire()
        with self.lock:
            return self.jobs.get(job_id)

    def remove(self, job_id: str) -> bool:
        """Delete a finished job now (its upload and picture too); False if unknown or not finished."""
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None or not job.finished:
                return False
            del self.jobs[job_id]
        self.uploads.remove(job.folder)
        return True

    def position(self, job: Job) -> int | None:
        """1 for the next job the worker takes; None once it is no longer waiting."""
        with self.lock:
            if job.status != QUEUED:
                return None
            return 1 + sum(1 for j in self.jobs.values() if j.status == QUEUED and j.order < job.order)

    def view(self, job: Job) -> dict:
        """What ``GET /v1/videos/{id}`` answers."""
        with self.lock:
            out = {"id": job.id, "status": job.status, "progress": FRACTION[job.status],
                   "filename": job.filename, "bytes": job.size, "submitted": job.submitted_at,
                   "timings": job.timings(), "result": job.result, "error": job.error,
                   "explanation": f"/v1/videos/{job.id}/explanation.png" if job.picture else None}
            if job.finished:
                out["expires_in_s"] = round(max(0.0, job.entered[job.status] + self.keep_seconds - time.monotonic()))
        out["position"] = self.position(job)
        if self.scorer.random_weights:
            out["warning"] = "RANDOM BACKBONE WEIGHTS: this verdict is for testing the pipeline only"
        return out

    def stats(self) -> dict:
        with self.lock:
            return {"waiting": self.queue.qsize(), "capacity": self.queue.maxsize, "jobs": len(self.jobs),
                    **self.counts, "seconds_per_job": round(self.seconds_per_job, 3),
                    "worker_alive": self.thread.is_alive()}

    def expire(self) -> None:
        now = time.monotonic()
        with self.lock:
            old = [j for j in self.jobs.values() if j.finished and now - j.entered[j.status] > self.keep_seconds]
            for job in old:
                del self.jobs[job.id]
            self.counts["expired"] += len(old)
        for job in old:
            self.uploads.remove(job.folder)

    # ---- the worker's side --------------------------------------------------------------------------------
    def _take(self) -> list[Job]:
        try:
            first = self.queue.get(timeout=0.5)
        except queue.Empty:
            return []
        batch = [first]
        while len(batch) < self.batch:
            try:
                batch.append(self.queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _run(self) -> None:
        while not self._stop.is_set():
            batch = self._take()
            if batch:
                self._score(batch)
                trim_heap()
            self.expire()

    def _on_event(self, key: str, _event: str, fields: dict) -> None:
        if key != STAGE or fields.get("stage") not in FROM_ENGINE:
            return
        with self.lock:
            job = self.jobs.get(fields.get("video_id"))
            if job is not None and not job.finished:
                job.move(FROM_ENGINE[fields["stage"]])

    def _finish(self, job: Job, status: str, result: dict | None = None, error: str = "",
                picture: Path | None = None) -> None:
        with self.lock:
            job.result, job.error, job.picture = result, error, picture
            job.move(SCORING)
            job.move(status)
            self.counts[status] += 1
            spent = job.entered[status] - job.entered.get(DECODING, job.entered[status])
            self.seconds_per_job = 0.8 * self.seconds_per_job + 0.2 * spent

    def _score(self, batch: list[Job]) -> None:
        by_id = {j.id: j for j in batch}
        try:
            for scored in self.scorer.score([(j.id, j.video) for j in batch], {j.id: j.folder for j in batch},
                                            Callback(self._on_event)):
                job = by_id.pop(scored.video_id)
                pred = scored.prediction
                result = {**{k: v for k, v in pred.as_dict().items() if k != "path"},
                          "threshold": self.scorer.threshold}
                if pred.status == "failed":
                    self._finish(job, FAILED, result, pred.error)
                else:
                    self._finish(job, DONE, result, picture=scored.picture)
        except Exception as exc:   # noqa: BLE001 - the one worker must outlive any job; each gets the reason
            log.exception("scoring a batch of %d failed", len(batch))
            for job in by_id.values():
                self._finish(job, FAILED, error=f"internal error: {type(exc).__name__}: {exc}"[:300])
            return
        for job in by_id.values():  # predict yields one verdict per video; a job it skipped is never left waiting
            self._finish(job, FAILED, error="internal error: the scoring pass gave no result for this video")

"""Load test of ``serve`` on loopback: N uploads from M concurrent clients, every job followed to its end.

    .venv/bin/python bench/serve_load.py [--run RUN] [--uploads 30] [--clients 10] [--rounds 2]
                                         [--queue 8] [--batch 4]

Each client uploads short generated sample clips, then polls its job until it is done or failed. A 503
(queue full) is a refusal, counted, not retried. Reported: uploads accepted and refused, jobs done,
failed and lost (accepted but never finished: must be 0), jobs/s, upload-to-verdict latency p50/p95, and the
server's resident memory sampled through the run (after a warm-up job; one figure per round, so a leak shows
as growth from round to round). Without ``--run`` it first builds a sample dataset, a store and a small
ensemble in a temporary folder (about a minute). Traffic goes only to 127.0.0.1; every loop is bounded.
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory of one process, from /proc (MB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Server:
    """``with Server(run, log, "--queue", "4") as s: requests.get(s.url + "/healthz")``: a real
    ``python -m pipeline serve`` on a free loopback port, killed on exit whatever happened."""

    def __init__(self, run: Path, log: Path, *args: str, token: str | None = None, startup: float = 180):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token, self.log, self.startup = token, log, startup
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        if token:
            env["DEEPFAKE_SERVE_TOKEN"] = token
        self.cmd = [sys.executable, "-m", "pipeline", "serve", "--run", str(run), "--port", str(self.port),
                    "--log-level", "warning", *args]
        self.env = env
        self.proc: subprocess.Popen | None = None

    @property
    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def __enter__(self) -> "Server":
        import requests
        self.proc = subprocess.Popen(self.cmd, cwd=ROOT, env=self.env, stdout=self.log.open("wb"),
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.startup
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"the server exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if requests.get(self.url + "/healthz", timeout=1).ok:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"the server did not answer within {self.startup:.0f} s:\n{self.log.read_text()[-3000:]}")

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def one_job(url: str, clip: Path, headers: dict, poll: float = 0.2, timeout: float = 300,
            retries: int = 0) -> dict:
    """Upload ``clip`` and follow its job; {"code", "status", "latency", ...} (status None when refused).
    With ``retries``, a 503 is retried after its Retry-After (at most 30 s) up to that many times."""
    import requests
    t0 = time.monotonic()
    refusals = 0
    while True:
        with clip.open("rb") as fh:
            r = requests.post(url + "/v1/videos", files={"file": (clip.name, fh)}, headers=headers, timeout=60)
        if r.status_code != 503 or refusals >= retries:
            break
        refusals += 1
        time.sleep(min(30.0, float(r.headers.get("Retry-After", "1"))))
    if r.status_code != 202:
        return {"code": r.status_code, "status": None, "latency": None, "retry_after": r.headers.get("Retry-After"),
                "refusals": refusals}
    job_id = r.json()["id"]
    deadline = t0 + timeout
    while time.monotonic() < deadline:
        job = requests.get(f"{url}/v1/videos/{job_id}", headers=headers, timeout=30).json()
        if job["status"] in ("done", "failed"):
            return {"code": 202, "status": job["status"], "latency": time.monotonic() - t0, "id": job_id,
                    "label": (job["result"] or {}).get("label"), "refusals": refusals}
        time.sleep(poll)
    return {"code": 202, "status": "lost", "latency": None, "id": job_id, "refusals": refusals}


def load(url: str, clips: list[Path], uploads: int, clients: int, headers: dict | None = None,
         pid: int | None = None, retries: int = 0) -> dict:
    """``uploads`` jobs from ``clients`` threads; counts, jobs/s, latency percentiles, RSS samples."""
    samples: list[float] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set() and pid:
            samples.append(rss_mb(pid))
            done.wait(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        outcomes = list(pool.map(lambda i: one_job(url, clips[i % len(clips)], headers or {}, retries=retries),
                                 range(uploads)))
    wall = time.monotonic() - t0
    done.set()
    sampler.join()
    codes = [o["code"] for o in outcomes]
    lat = np.array([o["latency"] for o in outcomes if o["latency"] is not None])
    finished = sum(o["status"] in ("done", "failed") for o in outcomes)
    return {"uploads": uploads, "clients": clients, "retries": retries, "accepted": codes.count(202),
            "refused_503": codes.count(503), "retried_503": sum(o["refusals"] for o in outcomes),
            "other_codes": sorted({c for c in codes if c not in (202, 503)}),
            "done": sum(o["status"] == "done" for o in outcomes), "failed": sum(o["status"] == "failed" for o in outcomes),
            "lost": codes.count(202) - finished, "wall_s": round(wall, 2),
            "jobs_per_s": round(finished / wall, 3) if wall else None,
            "latency_p50_s": round(float(np.percentile(lat, 50)), 3) if lat.size else None,
            "latency_p95_s": round(float(np.percentile(lat, 95)), 3) if lat.size else None,
            "rss_mb": {"start": round(samples[0], 1), "peak": round(max(samples), 1), "end": round(samples[-1], 1)}
            if samples else None, "outcomes": outcomes}


def build_run(base: Path) -> tuple[Path, list[Path]]:
    """A sample dataset, its store and a small ensemble (what the test fixture makes)."""
    from tests.conftest import FAST, SMALL_ENSEMBLE, cli
    from pipeline.sample import SampleConfig, run
    data = base / "data"
    run(SampleConfig(out=str(data), videos=8, seed=0, frames=12))
    cli("features", str(data), "--store", str(base / "f.h5"), *FAST, "--crop", "112")
    (base / "ensemble.toml").write_text(SMALL_ENSEMBLE)
    cli("train-ensemble", "--store", str(base / "f.h5"), "--run", str(base / "run"), "--config", str(base / "ensemble.toml"))
    return base / "run", sorted(data.rglob("*.mp4"))


def measure(run: Path, clips: list[Path], uploads: int, clients: int, rounds: int, queue: int, batch: int,
            log: Path, retries: int = 0) -> dict:
    with Server(run, log, "--queue", str(queue), "--batch", str(batch)) as server:
        warm = one_job(server.url, clips[0], {})                 # first job loads matplotlib etc.
        baseline = rss_mb(server.proc.pid)
        results = [load(server.url, clips, uploads, clients, pid=server.proc.pid, retries=retries)
                   for _ in range(rounds)]
        after = rss_mb(server.proc.pid)
    return {"warm_up": warm, "rss_after_warm_up_mb": round(baseline, 1), "rss_after_rounds_mb": round(after, 1),
            "rounds": results, "queue": queue, "batch": batch}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", help="a trained run (default: build a small one in a temporary folder)")
    ap.add_argument("--clips", help="folder of clips to upload (default: the sample dataset's)")
    ap.add_argument("--uploads", type=int, default=30)
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--queue", type=int, default=8)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--retries", type=int, default=0, help="retry a 503 after its Retry-After, up to N times")
    ap.add_argument("--quick", action="store_true", help="12 uploads from 4 clients, one round")
    args = ap.parse_args()
    if args.quick:
        args.uploads, args.clients, args.rounds = 12, 4, 1
    from bench.common import save
    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        base = Path(tmp)
        run, clips = (Path(args.run), []) if args.run else build_run(base)
        if args.clips:
            clips = sorted(Path(args.clips).rglob("*.mp4"))
        if not clips:
            raise SystemExit("no clips to upload: pass --clips FOLDER")
        figures = measure(run, clips, args.uploads, args.clients, args.rounds, args.queue, args.batch,
                          base / "server.log", args.retries)
    for i, r in enumerate(figures["rounds"], 1):
        print(f"round {i}: {r['uploads']} uploads from {r['clients']} clients: {r['accepted']} accepted, "
              f"{r['refused_503']} refused (503; {r['retried_503']} retried), {r['done']} done, {r['failed']} failed, {r['lost']} lost; "
              f"{r['jobs_per_s']} jobs/s, latency p50 {r['latency_p50_s']} s p95 {r['latency_p95_s']} s; "
              f"server RSS {r['rss_mb']}")
    print(f"server RSS after warm-up {figures['rss_after_warm_up_mb']} MB, after all rounds "
          f"{figures['rss_after_rounds_mb']} MB")
    print(f"results: {save('serve_load' + ('_retries' if args.retries else ''), figures)}")
    return 0 if all(r["lost"] == 0 and not r["other_codes"] for r in figures["rounds"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())

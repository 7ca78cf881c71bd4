"""A bounded load test of serve on loopback (bench/serve_load.py, smaller): every upload is answered or
refused with 503 + Retry-After, no accepted job is lost, memory stays flat, results expire with their upload."""
from __future__ import annotations

import os
import time

import requests

from bench.serve_load import Server, load, one_job, rss_mb


def test_concurrent_uploads_are_all_answered_or_refused_none_lost_and_memory_flat(trained_run, tmp_path):
    clips = sorted(trained_run["data"].rglob("*.mp4"))
    work = tmp_path / "work"
    work.mkdir()
    # One job waits at most while one is scored: six clients at once must meet the 503 path.
    with Server(trained_run["run"], tmp_path / "server.log", "--queue", "1", "--batch", "2",
                "--keep-minutes", "0.1", "--workdir", str(work)) as server:
        assert one_job(server.url, clips[0], {})["status"] == "done"          # warm-up
        rounds, rss = [], []
        for _ in range(3):
            rounds.append(load(server.url, clips, uploads=8, clients=6, pid=server.proc.pid))
            rss.append(rss_mb(server.proc.pid))
        stats = requests.get(server.url + "/healthz", timeout=30).json()
        ids = [o["id"] for r in rounds for o in r["outcomes"] if o["code"] == 202]
        time.sleep(0.1 * 60 + 1.5)                       # past --keep-minutes: results and uploads deleted
        gone = [requests.get(f"{server.url}/v1/videos/{i}", timeout=30).status_code for i in ids]
        private = work / os.listdir(work)[0]
        left = os.listdir(private)
    for r in rounds:
        assert r["accepted"] + r["refused_503"] == r["uploads"] and r["other_codes"] == []
        assert r["lost"] == 0 and r["done"] == r["accepted"] and r["failed"] == 0
        refused = [o for o in r["outcomes"] if o["code"] == 503]
        assert all(o["retry_after"] and int(o["retry_after"]) >= 1 for o in refused)
    assert sum(r["refused_503"] for r in rounds) >= 1 and sum(r["accepted"] for r in rounds) >= 6
    assert stats["accepted"] == 1 + len(ids) and stats["refused"] == sum(r["refused_503"] for r in rounds)
    assert max(rss) - min(rss) < 80, rss                 # MB: no growth with the number of jobs
    assert set(gone) == {404} and left == []

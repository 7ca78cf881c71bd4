"""A bounded load test of serve on loopback (bench/serve_load.py, smaller): every upload is answered or
refused with 503 + Retry-After, no accepted job is lost, memory stays flat, results expire with their upload."""
from __future__ import annotations

import os
import time

import requests

from bench.serve_load import Server, load, one_job, rss_mb

KEEP_MINUTES = 0.15


def _idle_rss(server) -> float:
    """The server's resident memory once its queue is empty and the worker has trimmed its heap."""
    deadline = time.monotonic() + 60
    while requests.get(server.url + "/healthz", timeout=30).json()["waiting"] and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    return rss_mb(server.proc.pid)


def test_concurrent_uploads_are_all_answered_or_refused_none_lost_and_memory_flat(trained_run, tmp_path):
    clips = sorted(trained_run["data"].rglob("*.mp4"))
    work = tmp_path / "work"
    work.mkdir()
    # One job waits at most while two are scored: six clients at once must meet the 503 path.
    with Server(trained_run["run"], tmp_path / "server.log", "--queue", "1", "--batch", "2",
                "--keep-minutes", str(KEEP_MINUTES), "--workdir", str(work)) as server:
        assert one_job(server.url, clips[0], {})["status"] == "done"          # warm-up (loads matplotlib etc.)
        burst = load(server.url, clips, uploads=8, clients=6, pid=server.proc.pid)
        # Then clients that honour Retry-After, three rounds: every upload is judged; memory after each round.
        rounds, rss = [], [_idle_rss(server)]
        for _ in range(3):
            rounds.append(load(server.url, clips, uploads=8, clients=6, pid=server.proc.pid, retries=30))
            rss.append(_idle_rss(server))
        stats = requests.get(server.url + "/healthz", timeout=30).json()
        ids = [o["id"] for r in (burst, *rounds) for o in r["outcomes"] if o["code"] == 202]
        time.sleep(KEEP_MINUTES * 60 + 1.5)                 # past --keep-minutes: results and uploads deleted
        gone = [requests.get(f"{server.url}/v1/videos/{i}", timeout=30).status_code for i in ids]
        private = work / os.listdir(work)[0]
        left = os.listdir(private)
    # the burst: every upload accepted or refused with 503 and a Retry-After; every accepted job done
    assert burst["accepted"] + burst["refused_503"] == burst["uploads"] and burst["other_codes"] == []
    assert burst["refused_503"] >= 1 and burst["lost"] == 0 and burst["done"] == burst["accepted"] >= 2
    assert all(o["retry_after"] and int(o["retry_after"]) >= 1 for o in burst["outcomes"] if o["code"] == 503)
    # the rounds that retry: all judged, none lost, none failed, and they met the 503 path on the way
    for r in rounds:
        assert r["accepted"] == r["done"] == r["uploads"] and r["lost"] == 0 and r["failed"] == 0, r
    assert sum(r["retried_503"] for r in rounds) >= 1
    # the server's own counts agree with what the clients saw: nothing accepted and then dropped
    refused = burst["refused_503"] + sum(r["retried_503"] for r in rounds)
    assert stats["accepted"] == stats["done"] == 1 + len(ids) and stats["failed"] == 0
    assert stats["refused"] == refused
    # memory: flat across the rounds (16 more jobs after the first round's figure; 2.5 MB a job would show)
    assert max(rss[1:]) - rss[1] < 40 and max(rss) - min(rss) < 60, rss
    assert set(gone) == {404} and left == []

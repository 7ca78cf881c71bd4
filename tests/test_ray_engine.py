"""``features --engine ray``: the store equals the local engine's, killed workers, actors and drivers lose
nothing, and a two-node cluster started on this machine shares the work.

Every Ray instance here is small (2 CPUs, or 1 per node; 200 MB object store), lives in its own short temp
folder with its own auth token, and every process of it is ended after the test, pass or fail.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from features.store import FeatureStore
from tests import clips
from tests.conftest import FAST, cli

RAY = ["--engine", "ray", "--ray-cpus", "2", "--ray-object-store-mb", "200"]
VIDEOS = 6            # 4 sample clips, one clip without a face, one file that is not a video
BAD = "fake/text.mp4"


# ---- fixtures -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dataset(sample_dataset, tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("raydata") / "data"
    for label in ("real", "fake"):
        (data / label).mkdir(parents=True)
        for clip in sorted((sample_dataset / label).glob("*.mp4"))[:2]:
            shutil.copy(clip, data / label / clip.name)
    clips.text_file(data / BAD)
    noise = np.random.default_rng(0).integers(0, 255, (6, 96, 96, 3), dtype=np.uint8)
    clips.write_frames(data / "real" / "no_face.mp4", noise)
    return data


@pytest.fixture(scope="module")
def no_ray(tmp_path_factory) -> str:
    """A PYTHONPATH on which ``import ray`` fails, as in an environment without the extra."""
    root = tmp_path_factory.mktemp("noray")
    (root / "ray").mkdir()
    (root / "ray" / "__init__.py").write_text("raise ImportError(\"No module named 'ray'\")\n")
    return f"{root}{os.pathsep}{Path(__file__).resolve().parents[1]}"


@pytest.fixture(scope="module")
def local_store(dataset, no_ray, tmp_path_factory) -> Path:
    """The local engine's store, made where Ray cannot be imported (so --engine local never needs it)."""
    store = tmp_path_factory.mktemp("local") / "f.h5"
    cli("features", str(dataset), "--store", str(store), *FAST, "--dataset", "folder", env={"PYTHONPATH": no_ray})
    return store


@pytest.fixture
def ray_env():
    """Environment for one test's Ray processes; afterwards every process carrying it is ended."""
    pytest.importorskip("ray.data")
    folder = tempfile.mkdtemp(prefix="rt", dir="/tmp")   # short: Ray's socket paths must fit in 107 bytes
    env = {"RAY_TMPDIR": folder, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),
           "RAY_USAGE_STATS_ENABLED": "0"}
    try:
        yield env
    finally:
        stop_ray(folder)
        shutil.rmtree(folder, ignore_errors=True)


def ray_pids(folder: str) -> list[int]:
    """Processes started under this test's RAY_TMPDIR (workers rename themselves, so match the environment)."""
    marker = f"RAY_TMPDIR={folder}\0".encode()
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                if marker in (proc / "environ").read_bytes():
                    pids.append(int(proc.name))
            except OSError:   # gone, or not ours
                continue
    return pids


def stop_ray(folder: str, grace: float = 5.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in ray_pids(folder):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while ray_pids(folder) and time.monotonic() < deadline:
            time.sleep(0.2)


def wait_gone(folder: str, seconds: float = 45.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while (left := ray_pids(folder)) and time.monotonic() < deadline:
        time.sleep(0.3)
    return left


# ---- helpers --------------------------------------------------------------------------------------------
def features(dataset: Path, store: Path, *extra: str, env: dict, check: bool = True):
    return cli("features", str(dataset), "--store", str(store), *FAST, "--dataset", "folder", "--json", *extra,
               env=env, check=check)


def contents(path: Path) -> dict:
    """Everything a user reads from a store, by video id (row order may differ between engines)."""
    with FeatureStore.open(path) as st:
        recs = st.records()
        ids = [r.video_id for r in recs]
        feats, masks = st.load(ids)
        return {"ids": ids,
                "status": {r.video_id: (r.status, r.reason) for r in recs},
                "features": dict(zip(ids, feats)), "masks": dict(zip(ids, masks)),
                "frames": {v: st.frames_of(v) for v in ids}, "identity": st.identity}


def within_fp16_rounding(a: np.ndarray, b: np.ndarray) -> bool:
    """(T, D) float16 features equal up to one fp16 step at each frame vector's scale. Exact equality is not
    to be had: oneDNN picks its kernels by batch size and thread count, so the same crop embedded in another
    batch (the engines group videos differently) differs by float32 reordering before the fp16 rounding."""
    a, b = a.astype(np.float32), b.astype(np.float32)
    step = np.spacing(np.abs(a).max(axis=1, keepdims=True).astype(np.float16)).astype(np.float32)   # (T, 1)
    return bool(np.all(np.abs(a - b) <= step))


def assert_same_store(a: dict, b: dict) -> None:
    assert sorted(a["ids"]) == sorted(b["ids"]) and a["identity"] == b["identity"]
    assert a["status"] == b["status"]                                # statuses and failure reasons
    for v in a["ids"]:
        assert np.array_equal(a["masks"][v], b["masks"][v]), v
        assert within_fp16_rounding(a["features"][v], b["features"][v]), v
        fa, fb = a["frames"][v], b["frames"][v]
        assert np.array_equal(fa["frame_index"], fb["frame_index"])
        assert np.array_equal(fa["timestamp"], fb["timestamp"], equal_nan=True)
        assert np.allclose(fa["boxes"], fb["boxes"], atol=1e-3, equal_nan=True), v   # px; threads reorder sums
        assert np.allclose(fa["probs"], fb["probs"], atol=1e-5), v


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- tests ----------------------------------------------------------------------------------------------
def test_without_ray_the_engine_says_how_to_install(dataset, no_ray, tmp_path):
    res = features(dataset, tmp_path / "f.h5", "--engine", "ray", env={"PYTHONPATH": no_ray}, check=False)
    assert res.returncode == 2 and "pip install '.[ray]'" in res.stderr


def test_ray_store_equals_local_store_and_inspect_shows_the_failure(dataset, local_store, ray_env, tmp_path):
    store = tmp_path / "f.h5"
    summary = json.loads(features(dataset, store, *RAY, env=ray_env).stdout)
    assert summary["done"] == VIDEOS - 1 and sum(summary["failed"].values()) == 1 and summary["no_face"] == 1
    ray = summary["ray"]
    assert ray["plan"]["detect"] == "tasks" and ray["cpus"] == 2 and ray["address"] == "local"
    (work,) = ray["work_per_node"].values()
    assert work == {"task": VIDEOS, "actor": VIDEOS}
    ours, ref = contents(store), contents(local_store)
    assert_same_store(ours, ref)
    assert ours["status"][BAD][0] == "failed" and "not a readable media file" in ours["status"][BAD][1]
    out = json.loads(cli("inspect", str(store), "--json").stdout)
    assert out["failed"] == [{"video_id": BAD, "reason": ours["status"][BAD][1]}]
    assert out["provenance"]["extraction_engine"]["engine"] == "ray"
    assert not wait_gone(ray_env["RAY_TMPDIR"]), "the engine left its Ray instance running"


def test_killed_task_worker_and_actor_are_retried_and_every_video_is_stored_once(dataset, local_store,
                                                                                  ray_env, tmp_path):
    marks = tmp_path / "task.killed", tmp_path / "actor.killed"
    env = {**ray_env, "PIPELINE_TEST_RAY_KILL": f"task:1:{marks[0]},actor:3:{marks[1]}"}
    store = tmp_path / "f.h5"
    summary = json.loads(features(dataset, store, *RAY, env=env).stdout)
    assert marks[0].exists() and marks[1].exists()           # both processes really died mid-run
    assert summary["done"] + sum(summary["failed"].values()) == VIDEOS
    ours = contents(store)
    assert len(ours["ids"]) == len(set(ours["ids"])) == VIDEOS   # every video once, no duplicate rows
    assert_same_store(ours, contents(local_store))


def test_killed_driver_rerun_completes_without_duplicates(dataset, local_store, ray_env, tmp_path):
    store = tmp_path / "f.h5"
    res = features(dataset, store, *RAY, env={**ray_env, "PIPELINE_TEST_KILL": "end:1"}, check=False)
    assert res.returncode == -signal.SIGKILL, res.stderr[-2000:]   # SIGKILLed right after its first commit
    stop_ray(ray_env["RAY_TMPDIR"])           # a killed driver's local instance leaves agent processes
    before = contents(store)
    assert 0 < len(before["ids"]) < VIDEOS
    # The rerun takes the GPU path (one fused actor decodes, detects and embeds) to show it writes the same
    # store: a run may be continued with another plan, since the plan is not part of the store's identity.
    rerun = json.loads(features(dataset, store, *RAY, "--ray-detect", "actors", env=ray_env).stdout)
    assert rerun["skipped"] == len(before["ids"])
    assert rerun["done"] + sum(rerun["failed"].values()) == VIDEOS - len(before["ids"])
    assert rerun["ray"]["plan"]["detect"] == "actors"
    after = contents(store)
    assert len(after["ids"]) == len(set(after["ids"])) == VIDEOS
    for v in before["ids"]:                    # what was committed before the kill is untouched
        assert np.array_equal(before["features"][v], after["features"][v])
    assert_same_store(after, contents(local_store))


def test_two_node_cluster_through_ray_address(dataset, ray_env, tmp_path):
    port = free_port()
    ray_cli = [str(Path(sys.executable).with_name("ray")), "start", "--node-ip-address=127.0.0.1",
               "--num-cpus=1", "--num-gpus=0", "--object-store-memory=200000000", "--disable-usage-stats"]
    env = {**os.environ, **ray_env}
    for extra in (["--head", f"--port={port}", "--include-dashboard=false"], [f"--address=127.0.0.1:{port}"]):
        res = subprocess.run(ray_cli + extra, env=env, capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr[-2000:]
    store = tmp_path / "f.h5"
    summary = json.loads(features(dataset, store, "--engine", "ray",
                                  env={**ray_env, "RAY_ADDRESS": f"127.0.0.1:{port}"}).stdout)
    ray = summary["ray"]
    assert ray["nodes"] == 2 and ray["address"] == f"127.0.0.1:{port}"
    work = ray["work_per_node"]
    assert len(work) == 2 and all(w["task"] + w["actor"] > 0 for w in work.values())   # both nodes worked
    assert sum(w["task"] for w in work.values()) == VIDEOS and sum(w["actor"] for w in work.values()) == VIDEOS
    assert summary["done"] + sum(summary["failed"].values()) == VIDEOS


# ---- without a Ray instance -----------------------------------------------------------------------------
def test_the_default_plan_uses_the_whole_cluster():
    from pipeline.core.errors import PipelineError
    from stages.preprocess import FeatureConfig
    from stages.ray_engine import RayConfig
    from stages.ray_engine.cluster import Cluster, make_plan
    gpu = Cluster("x", 64, 8, ({"id": "a", "cpus": 32, "gpus": 4}, {"id": "b", "cpus": 32, "gpus": 4}))
    plan = make_plan(RayConfig(), FeatureConfig(), gpu)
    assert (plan.detect, plan.actors, plan.actor_gpus, plan.actor_cpus, plan.device) == \
        ("actors", (8, 8), 1, 8, "cuda")                  # one actor per GPU, with its share of the CPUs
    cpu = Cluster("x", 16, 0, ({"id": "a", "cpus": 16, "gpus": 0},))
    plan = make_plan(RayConfig(), FeatureConfig(), cpu)
    assert (plan.detect, plan.actors, plan.actor_cpus, plan.device, plan.batch) == ("tasks", (1, 8), 1, "cpu", 4)
    with pytest.raises(PipelineError, match="largest node"):
        make_plan(RayConfig(ray_actor_cpus=33), FeatureConfig(), gpu)


def test_rows_carry_every_field_of_a_video_between_stages():
    from features.writer import VideoResult
    from stages.preprocess import Prepared
    from stages.ray_engine import rows
    T, C, D = 3, 8, 2048
    ok = VideoResult("a.mp4", "/d/a.mp4", 1, "train", "g", "m", 1, "", mask=np.array([True, False, True]),
                     boxes=np.arange(12, dtype=np.float32).reshape(3, 4), probs=np.full(3, 0.9, np.float32),
                     frame_index=np.array([0, 5, 9], np.int32), timestamp=np.array([0, .5, .9]),
                     info={"video_frames": 10, "fps": 10.0, "width": 64, "height": 48})
    bad = VideoResult("b.mp4", "/d/b.mp4", 0, "val", "h", "", 3, "decoding failed: x")
    crops = np.random.default_rng(0).integers(0, 255, (2, C, C, 3), dtype=np.uint8)
    trace = {"seq": np.arange(2)}
    batch = rows.prepared_batch([Prepared(ok, crops), Prepared(bad)], T, C, D, trace)
    back = rows.prepared_of(batch)
    assert np.array_equal(back[0].crops, crops) and len(back[1].crops) == 0
    back[0].result.features = np.ones((T, D), np.float16)
    out = rows.results_of(rows.result_batch([p.result for p in back], T, D, trace))
    assert (out[0].video_id, out[0].split, out[0].status, out[0].info) == ("a.mp4", "train", 1, ok.info)
    assert np.array_equal(out[0].boxes, ok.boxes) and np.array_equal(out[0].mask, ok.mask)
    assert (out[1].status, out[1].reason, out[1].label) == (3, "decoding failed: x", 0)
    assert not out[1].mask.any() and np.isnan(out[1].boxes).all() and (out[1].frame_index == -1).all()
    assert not out[1].features.any()

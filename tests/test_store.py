"""The feature store: round trips, growth, config refusal, the writer lock, and crash safety."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

from features import schema
from features.store import FeatureStore, StoreError
from features.synthetic import write_synthetic_store
from features.synthetic import synthetic_provenance
from features.writer import StoreWriter, VideoResult


def _arrays(n, t=4, d=16, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, t, d)).astype(np.float16), rng.random((n, t)) > 0.2,
            rng.integers(0, 2, n), np.array(["train", "val", "test"])[rng.integers(0, 3, n)])


def test_round_trip_keeps_requested_order_and_filters(tmp_path):
    x, m, y, s = _arrays(30)
    path = write_synthetic_store(tmp_path / "s.h5", x, m, y, s)
    with FeatureStore.open(path) as st:
        ids = [r.video_id for r in st.records()]
        order = ids[::-3]
        feats, masks = st.load(order)
        idx = [ids.index(v) for v in order]
        assert np.array_equal(feats, x[idx]) and np.array_equal(masks, m[idx])
        val = st.videos(split="val", label=1)
        assert {r.video_id for r in val} == {ids[i] for i in range(30) if s[i] == "val" and y[i] == 1}
        assert st.summary()["videos"] == 30
        assert st.provenance["feature_dim"] == 16 and st.provenance["frames"] == 4


def test_appending_new_videos_grows_the_store_and_keeps_old_rows(tmp_path):
    x, m, y, s = _arrays(10)
    path = write_synthetic_store(tmp_path / "s.h5", x, m, y, s)
    long_ids = [f"a/much/longer/folder/name/than/before/video_{i:04d}.mp4" for i in range(25)]
    x2, m2, y2, s2 = _arrays(25, seed=1)
    write_synthetic_store(path, x2, m2, y2, s2, video_ids=long_ids)
    with FeatureStore.open(path) as st:
        assert len(st.records()) == 35 and st.capacity >= 35
        feats, _ = st.load([f"synthetic/{i:06d}" for i in range(10)] + long_ids)
        assert np.array_equal(feats, np.concatenate([x, x2]))
    assert not list(tmp_path.glob("*.grow-*"))


def test_store_refuses_a_different_config(tmp_path):
    x, m, y, s = _arrays(5)
    path = write_synthetic_store(tmp_path / "s.h5", x, m, y, s)
    x8, m8, _, _ = _arrays(5, t=8)
    with pytest.raises(StoreError, match="different config.*frames"):
        write_synthetic_store(path, x8, m8, y, s, video_ids=[f"other{i}" for i in range(5)])


def test_new_starts_a_fresh_store_and_keeps_the_old_one(tmp_path):
    x, m, y, s = _arrays(5)
    path = write_synthetic_store(tmp_path / "s.h5", x, m, y, s)
    prov, ident = synthetic_provenance(8, 16)
    with StoreWriter(path, prov, ident, [], new=True):
        pass
    with FeatureStore.open(path) as st:
        assert st.frames == 8 and st.records() == []
    assert len(list(tmp_path.glob("s.h5.*.bak"))) == 1


def test_second_writer_is_refused_but_readers_may_open(tmp_path):
    x, m, y, s = _arrays(5)
    path = write_synthetic_store(tmp_path / "s.h5", x, m, y, s)
    prov, ident = synthetic_provenance(4, 16)
    with StoreWriter(path, prov, ident, []):
        with pytest.raises(StoreError, match=f"pid {os.getpid()}"):
            StoreWriter(path, prov, ident, [])
        with FeatureStore.open(path) as st:
            assert len(st.records()) == 5


def test_not_a_store_gives_a_clear_error(tmp_path):
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5 at all")
    with pytest.raises(StoreError, match="not a readable HDF5"):
        FeatureStore.open(junk)
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = 1
    with pytest.raises(StoreError, match="not a feature store"):
        FeatureStore.open(tmp_path / "other.h5")
    with pytest.raises(StoreError, match="make features"):
        FeatureStore.open(tmp_path / "missing.h5")


def test_failed_and_no_face_rows_are_recorded(tmp_path):
    prov, ident = synthetic_provenance(4, 8)
    rows = [VideoResult("bad.mp4", "/x/bad.mp4", 1, "train", "g1", "", schema.FAILED, "empty file (0 bytes)"),
            VideoResult("blank.mp4", "/x/blank.mp4", 0, "train", "g2", "", schema.NO_FACE, "no face",
                        mask=np.zeros(4, bool), frame_index=np.arange(4))]
    with StoreWriter(tmp_path / "s.h5", prov, ident, rows) as w:
        w.commit(rows)
        assert [e.video_id for e in w.todo(rows)] == []
        assert [e.video_id for e in w.todo(rows, retry_failed=True)] == ["bad.mp4"]
    with FeatureStore.open(tmp_path / "s.h5") as st:
        assert [r.reason for r in st.videos(status="failed")] == ["empty file (0 bytes)"]
        assert [r.video_id for r in st.videos()] == ["blank.mp4"]
        assert st.summary()["videos_without_face"] == 1


WRITER = textwrap.dedent("""
    import sys, numpy as np
    from features.writer import StoreWriter, VideoResult
    from features.synthetic import synthetic_provenance
    from features import schema
    path, n, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    prov, ident = synthetic_provenance(4, 512)
    def video(i):
        rng = np.random.default_rng(i)
        return VideoResult(f"v{i:03d}", f"/v{i:03d}.mp4", i % 2, "train", f"g{i}", "", schema.OK,
                           features=rng.normal(size=(4, 512)).astype(np.float16), mask=np.ones(4, bool),
                           frame_index=np.arange(4))
    entries = [video(i) for i in range(n)]
    with StoreWriter(path, prov, ident, entries) as w:
        todo = w.todo(entries)
        for s in range(0, len(todo), batch):
            w.commit(todo[s:s + batch])
""")


def _run_writer(path, env_kill=None, n=40, batch=4):
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    env.pop("PIPELINE_TEST_KILL", None)
    if env_kill:
        env["PIPELINE_TEST_KILL"] = env_kill
    return subprocess.run([sys.executable, "-c", WRITER, str(path), str(n), str(batch)], env=env,
                          capture_output=True, text=True)


def _contents(path):
    with FeatureStore.open(path) as st:
        ids = sorted(r.video_id for r in st.videos())
        feats, masks = st.load(ids)
        return ids, feats, masks


@pytest.mark.parametrize("kill", ["data:1", "data:3", "mid:2", "mid:5", "end:4"])
def test_sigkill_during_a_commit_loses_at_most_that_batch(tmp_path, kill):
    ref = tmp_path / "ref.h5"
    assert _run_writer(ref).returncode == 0
    ref_ids, ref_feats, _ = _contents(ref)
    path = tmp_path / "s.h5"
    res = _run_writer(path, kill)
    assert res.returncode == -signal.SIGKILL, res.stderr
    commit_no = int(kill.split(":")[1])
    ids, feats, masks = _contents(path)           # the killed store opens
    finished = (commit_no - (kill.startswith(("data", "mid")))) * 4
    assert len(ids) == finished                   # everything committed before the kill, nothing half-done
    assert np.array_equal(feats, ref_feats[:finished]) and masks.all()
    assert _run_writer(path).returncode == 0      # the rerun completes it ...
    ids, feats, _ = _contents(path)
    assert ids == ref_ids and np.array_equal(feats, ref_feats)   # ... byte-equal to an uninterrupted run


def test_sigkill_at_random_moments(tmp_path):
    """Kill a long writer at arbitrary instants (not at our hooks); each time the store must open."""
    ref = tmp_path / "ref.h5"
    assert _run_writer(ref, n=200, batch=2).returncode == 0
    _, ref_feats, _ = _contents(ref)
    path = tmp_path / "s.h5"
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    rng = np.random.default_rng(0)
    for _ in range(4):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), "200", "2"], env=env)
        try:
            proc.wait(timeout=float(rng.uniform(0.6, 2.0)))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        if path.exists():
            ids, feats, _ = _contents(path)
            assert np.array_equal(feats, ref_feats[[int(v[1:]) for v in ids]])
    assert _run_writer(path, n=200, batch=2).returncode == 0
    ids, feats, _ = _contents(path)
    assert len(ids) == 200 and np.array_equal(feats, ref_feats)

"""Stage one end to end: the CLI writes a store that inspect summarises, reruns skip, kills lose nothing
committed, and bad inputs are recorded without stopping the run."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from features.store import FeatureStore
from tests import clips
from tests.conftest import FAST, cli


def _store_arrays(path):
    with FeatureStore.open(path) as st:
        ids = sorted(r.video_id for r in st.videos(status=("ok", "no_face", "failed")))
        rows = {r.video_id: r for r in st.records()}
        feats, masks = st.load(ids)
        detail = {v: st.frames_of(v) for v in ids}
        return ids, feats, masks, detail, rows


@pytest.fixture(scope="module")
def reference_store(sample_dataset, tmp_path_factory):
    store = tmp_path_factory.mktemp("ref") / "f.h5"
    res = cli("features", str(sample_dataset), "--store", str(store), *FAST, "--json")
    return store, json.loads(res.stdout)


def test_features_writes_a_store_that_inspect_summarises(reference_store):
    store, summary = reference_store
    assert summary["done"] == 8 and not summary["failed"]
    out = json.loads(cli("inspect", str(store), "--json").stdout)
    assert out["summary"]["by_status"] == {"ok": 8}
    assert out["summary"]["by_label"] == {"real": 4, "fake": 4}
    prov = out["provenance"]
    assert prov["random_weights"] is True and "RANDOM" in prov["warning"]
    assert prov["frames"] == 4 and prov["crop"] == 64 and prov["feature_dim"] == 2048
    assert prov["manifest_sha256"] and prov["versions"]["torch"]
    assert prov["extraction_engine"]["omp_wait_policy"] == "PASSIVE"     # torch's threads sleep while ffmpeg runs
    human = cli("inspect", str(store)).stdout
    assert "RANDOM BACKBONE WEIGHTS" in human and "face coverage" in human
    assert (store.parent / "f.h5.manifest.csv").is_file() and (store.parent / "f.h5.config.json").is_file()


def test_features_have_the_right_shape_and_masks_match_detections(reference_store):
    store, _ = reference_store
    ids, feats, masks, detail, _ = _store_arrays(store)
    assert feats.shape == (8, 4, 2048) and feats.dtype == np.float16
    for i, vid in enumerate(ids):
        d = detail[vid]
        found = ~np.isnan(d["boxes"]).any(axis=1)
        assert np.array_equal(masks[i], found)                       # a frame is valid iff a face was tracked
        assert np.all(d["probs"][masks[i]] > 0.7)
        assert np.all(np.abs(feats[i][~masks[i]]) == 0)              # missing frames hold no features
        assert np.abs(feats[i][masks[i]].astype(np.float32)).sum() > 0
        assert (d["frame_index"] >= 0).all() and np.all(np.diff(d["frame_index"]) > 0)
    assert masks.mean() > 0.9                                       # faces found in the sample clips


def test_second_run_adds_nothing(reference_store, sample_dataset):
    store, _ = reference_store
    before = store.read_bytes()
    res = json.loads(cli("features", str(sample_dataset), "--store", str(store), *FAST, "--json").stdout)
    assert res["skipped"] == 8 and res["done"] == 0
    _, feats_after, *_ = _store_arrays(store)
    assert len(before) == store.stat().st_size


def test_a_different_config_is_refused_unless_new(reference_store, sample_dataset, tmp_path):
    store, _ = reference_store
    copy = tmp_path / "f.h5"
    shutil.copy(store, copy)
    args = ["features", str(sample_dataset), "--store", str(copy), *FAST[:2], "--crop", "96",
            "--weights", "random"]
    res = cli(*args, check=False)
    assert res.returncode == 2 and "different config" in res.stderr and "crop" in res.stderr


@pytest.mark.parametrize("kill", ["data:2", "mid:3", "end:1"])
def test_sigkill_mid_extraction_keeps_finished_videos_and_rerun_completes(reference_store, sample_dataset,
                                                                          tmp_path, kill):
    ref, _ = reference_store
    store = tmp_path / "f.h5"
    args = ["features", str(sample_dataset), "--store", str(store), *FAST, "--batch-size", "4", "--json"]
    res = cli(*args, env={"PIPELINE_TEST_KILL": kill}, check=False)
    assert res.returncode == -9, res.stderr[-2000:]
    ref_ids, ref_feats, ref_masks, _, _ = _store_arrays(ref)
    ids, feats, masks, _, _ = _store_arrays(store)                 # opens after the kill
    assert 0 < len(ids) < 8 or kill == "data:2"
    idx = [ref_ids.index(v) for v in ids]
    assert np.array_equal(feats, ref_feats[idx]) and np.array_equal(masks, ref_masks[idx])
    done = json.loads(cli(*args).stdout)
    assert done["skipped"] == len(ids) and done["done"] == 8 - len(ids)
    ids, feats, masks, _, _ = _store_arrays(store)
    assert ids == ref_ids and np.array_equal(feats, ref_feats) and np.array_equal(masks, ref_masks)


def test_bad_inputs_are_recorded_and_good_videos_stored(sample_dataset, tmp_path):
    data = tmp_path / "data"
    (data / "real").mkdir(parents=True)
    (data / "fake").mkdir()
    good = sorted((sample_dataset / "real").glob("*.mp4"))[:2]
    for g in good:
        shutil.copy(g, data / "real" / g.name)
    clips.empty_file(data / "fake" / "zero.mp4")
    clips.text_file(data / "fake" / "text.mp4")
    clips.audio_only(data / "fake" / "audio.mp4")
    clips.truncated(good[0], data / "fake" / "truncated.mp4", keep=0.05)
    from skimage import data as skdata
    face = skdata.astronaut()[::2, ::2]                              # (256, 256, 3): one real face
    clips.write_frames(data / "real" / "one_frame.mp4", face[None])
    noise = np.random.default_rng(0).integers(0, 255, (6, 128, 128, 3), dtype=np.uint8)
    clips.write_frames(data / "fake" / "no_face.mp4", noise)
    store = tmp_path / "f.h5"
    args = ["features", str(data), "--store", str(store), *FAST, "--dataset", "folder"]
    res = cli(*args)
    assert "failed" in res.stderr or "failed" in res.stdout       # the end-of-run table lists failures
    _, _, _, detail, rows = _store_arrays(store)
    status = {k: (r.status, r.reason) for k, r in rows.items()}
    assert status["fake/zero.mp4"] == ("failed", "empty file (0 bytes)")
    assert status["fake/text.mp4"][0] == "failed" and "not a readable media file" in status["fake/text.mp4"][1]
    assert status["fake/audio.mp4"] == ("failed", "no video stream (audio only)")
    assert status["fake/truncated.mp4"][0] == "failed"
    assert status["fake/no_face.mp4"][0] == "no_face" and not detail["fake/no_face.mp4"]["mask"].any()
    assert status["real/one_frame.mp4"][0] == "ok" and rows["real/one_frame.mp4"].n_valid == 1
    assert "short video: 1 of 4 frames" in status["real/one_frame.mp4"][1]
    for g in good:
        assert status[f"real/{g.name}"] == ("ok", "")
    again = json.loads(cli(*args, "--json").stdout)                # failures are not retried by default ...
    assert again["done"] == 0 and again["skipped"] == 8
    retry = json.loads(cli(*args, "--json", "--retry-failed").stdout)   # ... unless asked
    assert retry["skipped"] == 4 and sum(retry["failed"].values()) == 4


def test_a_second_features_on_a_locked_store_leaves_the_running_ones_files_alone(sample_dataset, tmp_path):
    """The manifest and config are written under the store's lock: a refused run touches neither."""
    from features.lock import WriterLock
    store = tmp_path / "busy.h5"
    manifest = tmp_path / "busy.h5.manifest.csv"
    other = tmp_path / "other"
    shutil.copytree(sample_dataset, other)
    (other / "manifest.csv").unlink()               # a folder dataset: another manifest than the running one's
    manifest.write_text("video_id,path,label,split,group,method,split_source\nrunning.mp4,/x,0,train,g,,seeded\n")
    before = manifest.read_bytes()
    with WriterLock(store):                         # the running writer holds the store
        res = cli("features", str(other), "--store", str(store), *FAST, check=False)
    assert res.returncode == 2 and "another process" in res.stderr
    assert manifest.read_bytes() == before
    assert not (tmp_path / "busy.h5.config.json").exists() and not store.exists()

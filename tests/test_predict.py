"""predict: the same numbers as the run's own test predictions, explanations, and bad inputs per file."""
from __future__ import annotations

import csv
import io
import json
import shutil

import numpy as np
import pytest

from features.store import FeatureStore
from stages.probe import probe
from tests import clips
from tests.conftest import cli


def _run_predictions(run):
    rows = list(csv.DictReader((run / "predictions.csv").open()))
    return {(r["video_id"], r["model"]): float(r["prob_fake"]) for r in rows}


def test_predict_on_a_folder_equals_the_runs_stored_predictions(trained_run):
    run, data = trained_run["run"], trained_run["data"]
    out = json.loads(cli("predict", str(data), "--run", str(run), "--json").stdout)
    videos = {v["video_id"]: v for v in out["videos"]}
    assert len(videos) == 8 and all(v["status"] == "ok" for v in videos.values())
    stored = _run_predictions(run)
    compared = 0
    for (vid, model), p in stored.items():
        got = videos[vid]["prob_fake"] if model == "ensemble" else videos[vid]["members"][model]
        assert got == pytest.approx(p, abs=1e-6), (vid, model)   # float32 heads, 8-digit CSV
        compared += 1
    assert compared >= 4                                         # val + test videos x models were checked
    for v in videos.values():
        assert set(v["members"]) == {"lstm", "bigru-attn", "meanpool"}
        assert v["label"] == ("fake" if v["prob_fake"] >= out["threshold"] else "real")
        assert v["face_coverage"] == 1.0 and v["seconds"] > 0


def test_predict_table_and_csv(trained_run):
    run, data = trained_run["run"], trained_run["data"]
    one = sorted((data / "fake").glob("*.mp4"))[0]
    table = cli("predict", str(one), "--run", str(run)).stdout
    assert one.name in table and "P(fake)" in table
    rows = list(csv.DictReader(io.StringIO(cli("predict", str(one), "--run", str(run), "--csv").stdout)))
    assert len(rows) == 1 and 0 <= float(rows[0]["prob_fake"]) <= 1 and rows[0]["lstm"]


def test_explain_writes_a_png_with_concentrated_heatmaps_and_attention(trained_run, tmp_path):
    from ensembles.run_folder import load_run, trained_identity
    from pipeline.explain import explain_video
    from pipeline.predict import find_videos, judge, pipeline_for_run
    from stages.local_engine import LocalEngine

    run, data = trained_run["run"], trained_run["data"]
    out = tmp_path / "explain"
    cli("predict", str(data / "fake"), "--run", str(run), "--explain", str(out))
    assert len(list(out.glob("*.png"))) == 4
    ensemble = load_run(run)
    pipe = pipeline_for_run(ensemble.store, trained_identity(ensemble.info), "cpu")
    target = find_videos([sorted((data / "fake").glob("*.mp4"))[0]])
    res = next(iter(LocalEngine(pipe.cfg, pipe.faces, pipe=pipe).results(target, keep_crops=True)))[0]
    pred = judge(res, ensemble)
    path, cams, att = explain_video(res, pred, pipe, ensemble, tmp_path)
    assert path.stat().st_size > 10_000
    assert cams.shape == (res.mask.sum(), 112, 112)
    for cam in cams:                                             # not uniform: a hot region, not everywhere
        assert cam.std() > 0.1 and 0.01 < (cam > 0.5).mean() < 0.6
        hot = np.sort(cam.ravel())[::-1]
        assert hot[:len(hot) // 4].sum() > 0.33 * hot.sum()    # hottest quarter: well above a uniform 25%
    assert set(att) == {"bigru-attn"}
    w = att["bigru-attn"]
    assert w.shape == (4,) and w.sum() == pytest.approx(1, abs=1e-5) and np.all(w[res.mask] > 0)


def test_bad_files_in_a_folder_get_one_line_each_and_the_rest_succeed(trained_run, tmp_path):
    run, data = trained_run["run"], trained_run["data"]
    folder = tmp_path / "mixed"
    folder.mkdir()
    good = sorted((data / "real").glob("*.mp4"))[0]
    shutil.copy(good, folder / "good.mp4")
    clips.empty_file(folder / "zero.mp4")
    clips.text_file(folder / "notes.mp4")
    noise = np.random.default_rng(1).integers(0, 255, (6, 96, 96, 3), dtype=np.uint8)
    clips.write_frames(folder / "noface.mp4", noise)
    res = cli("predict", str(folder), "--run", str(run), "--json")
    out = {v["video_id"]: v for v in json.loads(res.stdout)["videos"]}
    assert out["good.mp4"]["status"] == "ok"
    assert out["noface.mp4"]["prob_fake"] == 0.5 and out["noface.mp4"]["label"] == "no face found"
    assert out["zero.mp4"]["status"] == "failed" and out["zero.mp4"]["error"] == "empty file (0 bytes)"
    assert out["notes.mp4"]["status"] == "failed"
    assert res.stderr.count("error") >= 2 and "zero.mp4" in res.stderr and "notes.mp4" in res.stderr
    (folder / "good.mp4").unlink()
    (folder / "noface.mp4").unlink()
    assert cli("predict", str(folder), "--run", str(run), check=False).returncode == 1   # every file failed


def test_annotate_and_cache(trained_run, tmp_path):
    run, data = trained_run["run"], trained_run["data"]
    video = sorted((data / "fake").glob("*.mp4"))[0]
    annotated = tmp_path / "out.mp4"
    store = tmp_path / "cache.h5"
    cli("predict", str(video), "--run", str(run), "--annotate", str(annotated), "--cache", str(store))
    assert probe(annotated).n_frames == probe(video).n_frames
    with FeatureStore.open(store) as st:
        (rec,) = st.videos()
        assert rec.video_id == video.name and rec.label == -1
        with FeatureStore.open(trained_run["store"]) as ref:
            assert st.identity == ref.identity


def test_a_run_on_other_preprocessing_is_refused(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run["run"], run)
    info = json.loads((run / "run.json").read_text())
    info["store_identity"]["weights_sha256"] = "f" * 64
    (run / "run.json").write_text(json.dumps(info))
    res = cli("predict", str(trained_run["data"]), "--run", str(run), check=False)
    assert res.returncode == 2 and "differs" in res.stderr or "trained on" in res.stderr


def test_predict_cache_twice_appends_new_videos_and_never_rewrites_a_committed_row(trained_run, tmp_path):
    import h5py
    run, data = trained_run["run"], trained_run["data"]
    videos = sorted((data / "fake").glob("*.mp4"))
    store = tmp_path / "cache.h5"
    cli("predict", str(videos[0]), str(videos[1]), "--run", str(run), "--cache", str(store))

    def rows(path):
        with h5py.File(path, "r", locking=False) as f:
            status = f["status"][:]
            ids = [v.decode() for v in f["video_id"][:]]
            return {ids[r]: {k: f[k][r].tobytes() for k in f if f[k].shape and len(f[k].shape) >= 1}
                    for r in range(len(status)) if status[r]}

    first = rows(store)
    assert sorted(first) == [videos[0].name, videos[1].name]
    cli("predict", str(videos[1]), str(videos[0]), str(videos[2]), "--run", str(run), "--cache", str(store))
    second = rows(store)
    assert sorted(second) == sorted(v.name for v in videos[:3])
    for vid, cols in first.items():                 # every byte of every committed row is as it was
        assert second[vid] == cols, vid


def test_predict_on_a_folder_reports_fifos_and_dangling_links(trained_run, tmp_path):
    import os
    run, data = trained_run["run"], trained_run["data"]
    folder = tmp_path / "odd"
    folder.mkdir()
    shutil.copy(sorted((data / "real").glob("*.mp4"))[0], folder / "good.mp4")
    os.mkfifo(folder / "pipe.mp4")
    (folder / "gone.mp4").symlink_to(tmp_path / "nowhere.mp4")
    res = cli("predict", str(folder), "--run", str(run), "--json")
    out = {v["video_id"]: v for v in json.loads(res.stdout)["videos"]}
    assert out["good.mp4"]["status"] == "ok"
    assert out["pipe.mp4"]["error"] == "not a regular file (a FIFO)"
    assert out["gone.mp4"]["error"] == "broken symbolic link"
    assert "pipe.mp4" in res.stderr and "gone.mp4" in res.stderr

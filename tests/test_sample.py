"""The generated sample dataset: paired real/fake clips, their manifest, determinism, and where fakes differ."""
from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter

import numpy as np
import pytest

from pipeline.cli import main as cli_main
from pipeline.core.config import ConfigError
from pipeline.sample import COLUMNS, SampleConfig, SampleError, render_source, run
from stages.decode import sample_frames
from stages.probe import probe

FRAMES = 12   # short clips keep this module fast; every other option is the default


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    cfg = SampleConfig(out=str(tmp_path_factory.mktemp("a") / "sample"), videos=8, seed=0, frames=FRAMES)
    return cfg, run(cfg)


@pytest.fixture(scope="module")
def decoded(sample):
    """video_id -> (T, H, W, 3) uint8 frames, decoded through the project's own ffmpeg path."""
    _, out = sample
    return {row["video_id"]: sample_frames(out / row["path"], FRAMES + 5).frames for row in _rows(out)}


@pytest.fixture(scope="module")
def boxes(sample):
    """Source k -> (T, 4) face boxes in frame pixels, as the generator placed them."""
    cfg, _ = sample
    return {k: render_source(cfg, k, with_fake=False).boxes for k in range(4)}


def _rows(out) -> list[dict[str, str]]:
    with (out / "manifest.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def _regions(box: np.ndarray, hw: tuple[int, int], margin: float) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) masks: the central 60% of the face box, and everything ``margin`` face heights beyond it."""
    x0, y0, x1, y1 = box
    yy, xx = np.mgrid[0:hw[0], 0:hw[1]]
    inside = (abs(xx - (x0 + x1) / 2) < 0.3 * (x1 - x0)) & (abs(yy - (y0 + y1) / 2) < 0.3 * (y1 - y0))
    m = margin * (y1 - y0)
    outside = (xx < x0 - m) | (xx > x1 + m) | (yy < y0 - m) | (yy > y1 + m)
    return inside, outside


def _iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_eight_videos_make_four_real_fake_pairs(sample):
    _, out = sample
    rows = _rows(out)
    assert list(rows[0]) == list(COLUMNS)
    assert [r["video_id"] for r in rows] == sorted(r["video_id"] for r in rows)
    assert Counter(r["label"] for r in rows) == {"real": 4, "fake": 4}
    for r in rows:
        assert r["video_id"] == r["path"] == f"{r['label']}/{r['group']}_{r['label']}.mp4"
        assert r["sha256"] == hashlib.sha256((out / r["path"]).read_bytes()).hexdigest()
    pairs = {g: sorted(r["label"] for r in rows if r["group"] == g) for g in {r["group"] for r in rows}}
    assert pairs == {f"src{k:03d}": ["fake", "real"] for k in range(4)}
    assert {r["identity"] for r in rows} == {"astronaut", "grace_hopper"}
    assert sorted(p.name for p in out.rglob("*.mp4")) == sorted(r["path"].split("/")[1] for r in rows)


def test_every_clip_is_a_decodable_h264_video(sample, decoded):
    cfg, out = sample
    for row in _rows(out):
        info = probe(out / row["path"])
        assert (info.codec, info.width, info.height, info.n_frames) == ("h264", 256, 256, FRAMES)
        assert info.fps == pytest.approx(cfg.fps)
        assert decoded[row["video_id"]].shape == (FRAMES, 256, 256, 3)


def test_the_manifest_loads_with_pairs_kept_together(sample):
    from pipeline.datasets import DatasetConfig, load_manifest
    _, out = sample
    entries = load_manifest(out, DatasetConfig())
    assert sorted((e.video_id, e.label) for e in entries) == sorted(
        (r["video_id"], int(r["label"] == "fake")) for r in _rows(out))
    for group in {e.group for e in entries}:
        assert len({e.split for e in entries if e.group == group}) == 1


def test_same_seed_gives_an_identical_manifest(sample, tmp_path):
    cfg, out = sample
    again = run(SampleConfig(out=str(tmp_path / "again"), videos=8, seed=0, frames=FRAMES))
    assert (again / "manifest.csv").read_bytes() == (out / "manifest.csv").read_bytes()   # sha256 included


def test_another_seed_gives_other_clips(sample, tmp_path):
    _, out = sample
    other = _rows(run(SampleConfig(out=str(tmp_path / "s1"), videos=2, seed=1, frames=FRAMES)))
    first = {r["video_id"]: r["sha256"] for r in _rows(out)}
    assert [r["video_id"] for r in other] == ["fake/src000_fake.mp4", "real/src000_real.mp4"]
    assert all(first[r["video_id"]] != r["sha256"] for r in other)


def test_before_encoding_a_fake_equals_its_real_away_from_the_face():
    pair = render_source(SampleConfig(frames=4, seed=7), 1)
    for t in range(4):
        inside, outside = _regions(pair.boxes[t], pair.real.shape[1:3], margin=0.5)
        assert np.array_equal(pair.fake[t][outside], pair.real[t][outside])
        assert np.abs(pair.fake[t][inside].astype(int) - pair.real[t][inside]).mean() > 5


def test_decoded_fakes_differ_from_reals_inside_the_face_not_outside(decoded, boxes):
    for k, face in boxes.items():
        real = decoded[f"real/src{k:03d}_real.mp4"].astype(np.int16)
        fake = decoded[f"fake/src{k:03d}_fake.mp4"].astype(np.int16)
        diff_in, diff_out = [], []
        for t in range(FRAMES):
            inside, outside = _regions(face[t], real.shape[1:3], margin=0.25)
            diff = np.abs(fake[t] - real[t]).mean(-1)   # (H, W)
            diff_in.append(diff[inside].mean())
            diff_out.append(diff[outside].mean())
        # outside, only the encoder's noise differs (~1-2 grey levels); inside, the blend (~10-35)
        assert np.mean(diff_out) < 3.0, (k, np.mean(diff_out))
        assert np.mean(diff_in) >= 5 * np.mean(diff_out), (k, np.mean(diff_in), np.mean(diff_out))


def test_the_fake_face_flickers_from_frame_to_frame(decoded, boxes):
    """A real face's mean colour follows the smooth camera and lighting curves; a fake's jumps frame to frame.

    Measured as the mean |second difference| over frames of the face's mean RGB: smooth motion has almost
    none, independent per-frame blend jitter has a lot (over seeds 0-5, fakes showed 10-34x the reals').
    """
    for k, face in boxes.items():
        jerk = {}
        for label in ("real", "fake"):
            clip = decoded[f"{label}/src{k:03d}_{label}.mp4"].astype(np.float64)
            means = np.array([clip[t][_regions(face[t], clip.shape[1:3], 0.25)[0]].mean(0)
                              for t in range(FRAMES)])                        # (T, 3)
            jerk[label] = np.abs(np.diff(means, n=2, axis=0)).mean()
        assert jerk["fake"] > 2.0 and jerk["fake"] >= 4 * jerk["real"], (k, jerk)


def test_a_face_detector_finds_the_face_where_the_generator_put_it(decoded, boxes):
    facenet = pytest.importorskip("facenet_pytorch")
    # min_face_size 50 (faces here are ~100 px tall) keeps the image pyramid, and this test, short
    mtcnn = facenet.MTCNN(keep_all=True, device="cpu", min_face_size=50)
    picks = [(k, label, t) for k in boxes for label in ("real", "fake") for t in (0, FRAMES - 1)]
    frames = np.stack([decoded[f"{label}/src{k:03d}_{label}.mp4"][t] for k, label, t in picks])
    found, probs = mtcnn.detect(frames)
    for (k, label, t), box, prob in zip(picks, found, probs):
        assert box is not None and len(box) == 1 and prob[0] > 0.95, (k, label, t, box)   # one face, clearly
        assert _iou(box[0], boxes[k][t]) > 0.7, (k, label, t, box, boxes[k][t])   # measured 0.83-0.98


def test_cli_odd_count_adds_a_real_and_saves_the_config(tmp_path, capsys):
    out = tmp_path / "odd"
    assert cli_main(["sample", str(out), "--videos", "3", "--frames", "4", "--seed", "3"]) == 0
    rows = _rows(out)
    assert [(r["video_id"], r["group"]) for r in rows] == [
        ("fake/src000_fake.mp4", "src000"), ("real/src000_real.mp4", "src000"), ("real/src001_real.mp4", "src001")]
    saved = json.loads((out / "sample_config.json").read_text())
    assert (saved["videos"], saved["seed"], saved["frames"], saved["out"]) == (3, 3, 4, str(out))
    assert "3 (2 real, 1 fake)" in capsys.readouterr().out


def test_rerunning_into_an_earlier_sample_replaces_its_clips(tmp_path):
    out = tmp_path / "s"
    run(SampleConfig(out=str(out), videos=4, frames=4))
    run(SampleConfig(out=str(out), videos=2, frames=4))
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.mp4")) == [r["path"] for r in _rows(out)]
    assert len(_rows(out)) == 2


def test_bad_out_is_a_clear_error(tmp_path, capsys):
    a_file = tmp_path / "clips.txt"
    a_file.write_text("not a folder")
    with pytest.raises(SampleError, match="is a file"):
        run(SampleConfig(out=str(a_file), videos=2, frames=4))
    assert cli_main(["sample", str(a_file), "--videos", "2"]) == 2
    assert "is a file" in capsys.readouterr().err
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.md").write_text("mine")
    with pytest.raises(SampleError, match="holds no earlier sample"):
        run(SampleConfig(out=str(tmp_path / "other"), videos=2, frames=4))
    assert (tmp_path / "other" / "notes.md").read_text() == "mine"


def test_an_ffmpeg_failure_is_reported_with_its_message(tmp_path, monkeypatch):
    broken = tmp_path / "ffmpeg"
    broken.write_text("#!/bin/sh\necho 'Unknown encoder libx264' >&2\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.setattr("pipeline.sample.ffmpeg_exe", lambda: str(broken))
    with pytest.raises(SampleError, match="could not encode .*Unknown encoder libx264"):
        run(SampleConfig(out=str(tmp_path / "s"), videos=1, frames=2))


@pytest.mark.parametrize("bad", [{"width": 255}, {"height": 32}, {"videos": 0}, {"frames": 1}, {"seed": -1}])
def test_config_refuses_unusable_values(bad):
    with pytest.raises(ConfigError):
        SampleConfig(**bad)

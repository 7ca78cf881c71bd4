"""The second look (issue 18): darkened footage keeps its subject, and nothing is invented.

Clips are generated (tests/face_clips.py: the sample's photos in a dim room, every third frame better lit)
and darkened with ffmpeg's ``eq`` filter, so that the first search loses the subject in the dim frames.
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from features import schema
from features.store import FeatureStore
from pipeline.cli import main
from pipeline.core.config import identity_of
from stages.decode import sample_frames
from stages.faces import Detections, FaceConfig, FaceDetector, Track, select_subject
from stages.faces.second_look import SECOND_LOOK, normalise, second_look, sources
from stages.faces.track import _iou
from tests.clips import _run, write_frames
from tests.conftest import FAST, cli
from tests.face_clips import Person, darken, face_clip

N = 12
LIGHT = 0.55 + 0.3 * (np.arange(N) % 3 == 0)      # every third frame better lit, the others dim
SUBJECT = Person(1, 80, 0.5)                       # Grace Hopper, an 80 px face


@pytest.fixture(scope="module")
def det():
    return FaceDetector(FaceConfig(), "cpu")


@pytest.fixture(scope="module")
def clip_pair(tmp_path_factory):
    """The one-person clip and its darkened copy (eq=gamma=0.3)."""
    base = tmp_path_factory.mktemp("dark")
    orig = face_clip(base / "orig.mp4", [SUBJECT], LIGHT, N)
    return orig, darken(orig, base / "dark.mp4", "gamma=0.3")


def first_search(det, path, subject: str | None = None):
    """Frames, detections and the subject's track (``subject``: the FaceConfig rule, default the detector's)."""
    frames = sample_frames(path, N).frames
    dets = det.detect(frames)
    cfg = det.cfg if subject is None else dataclasses.replace(det.cfg, subject=subject)
    return frames, dets, select_subject(dets, frames.shape[1:3], cfg)


def ious(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.array([_iou(x, y[None])[0] for x, y in zip(a, b)])


def assert_keeps_subject(ref: Track, looked) -> None:
    """The acceptance rule: found in >= 99% of the frames where the original has it, at IoU >= 0.8."""
    both = ref.found & looked.track.found
    assert both.sum() >= 0.99 * ref.found.sum()
    assert ious(looked.track.boxes[both], ref.boxes[both]).min() >= 0.8


@pytest.mark.parametrize("eq", ["gamma=0.3", "gamma=0.3:contrast=0.8"])
def test_a_darkened_clip_keeps_its_subject(det, clip_pair, tmp_path, eq):
    orig, dark = clip_pair
    if eq != "gamma=0.3":
        dark = darken(orig, tmp_path / "d.mp4", eq)
    _, _, ref = first_search(det, orig)
    assert ref.found.all()
    frames, dets, track = first_search(det, dark)
    assert track.found.sum() < N - 3               # the first search alone loses the dim frames
    looked = second_look(frames, dets, track, det)
    assert_keeps_subject(ref, looked)
    gaps = np.flatnonzero(~track.found)
    assert sorted(looked.found) == gaps.tolist()
    assert (looked.track.chosen[gaps] == SECOND_LOOK).all()
    assert (looked.track.probs[gaps] >= det.cfg.second_look_accept).all()
    src = sources(looked.track)
    assert (src[gaps] == schema.SECOND_LOOK).all() and (src[track.found] == schema.SEARCH).all()
    assert np.isnan(looked.boxes[track.found]).all() and not np.isnan(looked.boxes[gaps]).any()


def test_a_complete_track_is_not_looked_at_again(det, clip_pair):
    frames, dets, track = first_search(det, clip_pair[0])
    looked = second_look(frames, dets, track, det)
    assert looked.track is track and looked.looked == () and (sources(track) == schema.SEARCH).all()


def test_the_subject_is_not_invented_where_it_left(det, tmp_path):
    """The subject steps out of frames 4, 5, 7 and 8 while another person stands next to where it was: the
    larger face stays the subject (its track spans every frame) and nobody is put in its gaps."""
    gone = (4, 5, 7, 8)
    people = [Person(1, 90, 0.4, absent=gone), Person(0, 75, 0.6)]
    frames, dets, track = first_search(det, face_clip(tmp_path / "gone.mp4", people, np.full(N, 0.9), N))
    assert not track.found[list(gone)].any() and track.found.sum() == N - len(gone)
    assert all(len(dets[t]) for t in gone)          # the other person is found there, next to the gap
    looked = second_look(frames, dets, track, det)
    assert set(gone) <= set(looked.looked)          # it did look, and found no one
    assert looked.found == () and looked.track is track


def test_a_dark_subject_next_to_another_person_keeps_its_track(det, tmp_path):
    """The larger face, lost in some dim frames, stays the subject (the track spanning them keeps its
    weight against the other person, found in more of them) and the second look fills its gaps with it."""
    people = [Person(1, 90, 0.4), Person(0, 75, 0.6)]
    orig = face_clip(tmp_path / "two.mp4", people, LIGHT, N)
    _, _, ref = first_search(det, orig)
    assert ref.found.all()
    frames, dets, track = first_search(det, darken(orig, tmp_path / "two_dark.mp4", "gamma=0.3"))
    gaps = np.flatnonzero(~track.found)
    assert len(gaps) >= 3
    looked = second_look(frames, dets, track, det)
    assert_keeps_subject(ref, looked)               # the subject's boxes, not the other person's
    centre = (looked.track.boxes[:, 0] + looked.track.boxes[:, 2]) / 2
    assert (centre < 0.5 * 640).all()               # every box is on the subject's side of the frame


@pytest.fixture(scope="module")
def no_face_clips(tmp_path_factory):
    base = tmp_path_factory.mktemp("noface")
    noise = np.random.default_rng(0).integers(0, 255, (N, 240, 320, 3), dtype=np.uint8)
    paths = [write_frames(base / "noise.mp4", noise)]
    paths.append(base / "testsrc.mp4")
    _run(["-f", "lavfi", "-i", "testsrc=size=640x360:rate=8", "-frames:v", str(N), "-c:v", "libx264",
          "-pix_fmt", "yuv420p", str(paths[-1])])
    return paths + [darken(p, base / f"{p.stem}_dark.mp4", "gamma=0.4") for p in paths]


def test_clips_without_a_face_still_have_none(det, no_face_clips):
    for path in no_face_clips:
        frames, dets, track = first_search(det, path)
        looked = second_look(frames, dets, track, det)
        assert not looked.track.found.any(), path.name


def test_a_box_no_detection_confirms_is_never_used(det, no_face_clips):
    """A track claimed on face-free frames (as a stray first-search box would) is not extended: the second
    look searches between its frames and finds no face, so those frames stay missing."""
    for path in no_face_clips[:2]:
        frames = sample_frames(path, N).frames
        h, w = frames.shape[1:3]
        box = np.array([w * 0.4, h * 0.3, w * 0.6, h * 0.6], np.float32)
        found = np.arange(N) % 4 == 0
        claimed = Track(np.where(found[:, None], box, np.nan).astype(np.float32),
                        np.where(found, 0.95, 0).astype(np.float32), found, np.where(found, 0, -1))
        dets = [_claimed(box) if f else Detections.empty() for f in found]
        looked = second_look(frames, dets, claimed, det)
        assert len(looked.looked) == (~found).sum() and looked.found == (), path.name


def _claimed(box: np.ndarray) -> Detections:
    """One detection a first search might have returned there (only its box is read)."""
    return Detections(box[None], np.array([0.95], np.float32), np.zeros((1, 5, 2), np.float32))


def test_normalisation_exposes_the_face_not_the_wall():
    rng = np.random.default_rng(0)
    region = np.full((160, 160, 3), 200.0, np.float32)            # a bright wall
    region[48:112, 48:112] = rng.uniform(2, 8, (64, 64, 3))        # a dark face in the predicted box
    out = normalise(region, np.array([48, 48, 112, 112], np.float32))
    face, before = out[56:104, 56:104, 0], region[56:104, 56:104] @ np.array([0.299, 0.587, 0.114])
    assert face.mean() > 8 * before.mean() and face.std() > 8 * before.std()   # lifted and stretched
    assert out.min() >= 0 and out.max() <= 255
    assert out.shape == region.shape and (out[..., 0] == out[..., 1]).all()   # grey


def test_identity_records_the_second_look_only_as_it_must():
    ident = identity_of(FaceConfig())
    assert ident["second_look"] is True
    assert "second_look_region" not in ident and "second_look_accept" not in ident   # defaults: left out
    assert identity_of(FaceConfig(second_look_accept=0.95))["second_look_accept"] == 0.95
    assert identity_of(FaceConfig(second_look=False))["second_look"] is False
    with pytest.raises(ValueError):
        FaceConfig(second_look_region=1.0)


def test_faces_command_and_sheet_show_the_second_look(clip_pair, tmp_path, capsys):
    sheet = tmp_path / "sheet.png"
    assert main(["faces", str(clip_pair[1]), "--frames", str(N), "--json", "--sheet", str(sheet)]) == 0
    res = json.loads(capsys.readouterr().out)
    by = res["by_source"]
    assert by["second look"] >= 3 and by["search"] + by["second look"] == res["subject_found"] == N
    for f in res["frames"]:
        assert (f["source"] == "second look") == (f["second_look"] is not None)
        assert f["source"] != "second look" or (f["subject"] is None and f["second_look"]["prob"] >= 0.9)
    assert sheet.is_file()
    assert main(["faces", str(clip_pair[1]), "--frames", str(N), "--no-second-look"]) == 0
    out = capsys.readouterr().out
    assert "0 by the second look" in out and "second look" not in out.split("subject found")[0].split("from")[1]


def test_the_store_records_where_each_box_came_from(clip_pair, tmp_path):
    data = tmp_path / "data"
    for folder, p in zip(("real", "fake"), clip_pair):
        (data / folder).mkdir(parents=True)
        (data / folder / p.name).write_bytes(p.read_bytes())
    store = tmp_path / "f.h5"
    cli("features", str(data), "--store", str(store), *FAST, "--frames", str(N), "--dataset", "folder")
    with FeatureStore.open(store) as st:
        dark, orig = st.frames_of("fake/dark.mp4"), st.frames_of("real/orig.mp4")
        assert st.identity["detector"]["second_look"] is True
    assert (orig["source"] == schema.SEARCH).all()
    assert (dark["source"] == schema.SECOND_LOOK).sum() >= 3 and (dark["source"] != schema.NOWHERE).all()
    assert (dark["mask"] == (dark["source"] != schema.NOWHERE)).all()

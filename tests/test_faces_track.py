"""Subject selection, following, smoothing and square crops, on hand-made detections (no network runs)."""
from __future__ import annotations

import numpy as np
import pytest

from stages.faces import Detections, FaceConfig, Track, crop_faces, select_subject
from stages.faces.crop import square_window
from stages.faces.track import smooth_boxes

H, W = 240, 320


def dets(*faces: tuple[tuple[float, float, float, float], float]) -> Detections:
    """Detections from ((x1, y1, x2, y2), prob) pairs, best first like the detector returns them."""
    if not faces:
        return Detections.empty()
    faces = sorted(faces, key=lambda f: -f[1])
    boxes = np.array([f[0] for f in faces], np.float32)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    return Detections(boxes, np.array([f[1] for f in faces], np.float32),
                      np.repeat(centres[:, None, :], 5, axis=1).astype(np.float32))


def box_at(cx: float, cy: float, size: float) -> tuple[float, float, float, float]:
    return (cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2)


def test_subject_is_the_largest_confident_face_and_is_followed():
    cfg = FaceConfig(smooth=1)
    frames = [dets((box_at(100 + 4 * t, 100, 60), 0.99), (box_at(250, 60, 30), 0.999)) for t in range(5)]
    track = select_subject(frames, (H, W), cfg)
    assert track.found.all()
    np.testing.assert_allclose(track.boxes[:, 0], [70 + 4 * t for t in range(5)])
    assert (track.probs == np.float32(0.99)).all()


def test_an_unconfident_large_face_does_not_become_the_subject():
    frames = [dets((box_at(100, 100, 80), 0.75), (box_at(250, 120, 40), 0.99))] * 3
    track = select_subject(frames, (H, W), FaceConfig(smooth=1, min_prob=0.9))
    assert np.allclose(track.boxes[:, 0], 230)


def test_another_person_entering_does_not_steal_the_track():
    cfg = FaceConfig(smooth=1)
    frames = []
    for t in range(6):
        faces = [] if t == 4 else [(box_at(80 + 3 * t, 120, 60), 0.98)]   # subject missed in frame 4
        if t >= 2:                                  # someone walks in on the other side, more confident
            faces.append((box_at(250, 110, 50), 0.9999))
        frames.append(dets(*faces))
    track = select_subject(frames, (H, W), cfg)
    assert track.found.tolist() == [True, True, True, True, False, True]
    centres = (track.boxes[track.found, 0] + track.boxes[track.found, 2]) / 2
    np.testing.assert_allclose(centres, [80, 83, 86, 89, 95])


def test_missing_frames_are_marked_and_a_person_elsewhere_is_not_taken():
    cfg = FaceConfig(smooth=1)
    frames = [dets((box_at(80, 120, 60), 0.99)), dets(), dets((box_at(260, 60, 30), 0.99)),
              dets((box_at(86, 122, 60), 0.98))]
    track = select_subject(frames, (H, W), cfg)
    assert track.found.tolist() == [True, False, False, True]
    assert np.isnan(track.boxes[1]).all() and track.probs[2] == 0 and track.chosen[2] == -1


def test_no_face_anywhere_gives_an_all_missing_track():
    track = select_subject([dets(), dets()], (H, W), FaceConfig())
    assert not track.found.any() and np.isnan(track.boxes).all()
    crops, valid = crop_faces(np.zeros((2, H, W, 3), np.uint8), track, crop=32)
    assert crops.shape == (2, 32, 32, 3) and not valid.any() and not crops.any()


def test_smoothing_calms_jitter_but_keeps_missing_frames_missing():
    rng = np.random.default_rng(0)
    n = 12
    true = np.array([box_at(100 + 2 * t, 100, 60) for t in range(n)], np.float32)
    noisy = true + rng.normal(0, 3, true.shape).astype(np.float32)
    found = np.ones(n, bool)
    found[5] = False
    noisy[5] = np.nan
    smooth = smooth_boxes(noisy, found, 3)
    assert np.isnan(smooth[5]).all()
    err_raw = np.abs(noisy[found] - true[found]).mean()
    err_smooth = np.abs(smooth[found] - true[found]).mean()
    assert err_smooth < err_raw


def test_crop_is_a_square_around_the_face_with_the_margin():
    frame = np.zeros((1, H, W, 3), np.uint8)
    frame[0, 100:160, 120:180] = (255, 0, 0)            # the "face": a red 60 px square
    track = Track(np.array([[120, 100, 180, 160]], np.float32), np.ones(1, np.float32), np.ones(1, bool),
                  np.zeros(1, np.int64))
    assert square_window(track.boxes[0], H, W, 1.3) == (91, 169, 111, 189)   # 78 px square, same centre
    crops, valid = crop_faces(frame, track, crop=64, margin=1.3)
    assert valid.all() and crops.shape == (1, 64, 64, 3)
    assert (crops[0, 32, 32] == (255, 0, 0)).all()        # face in the middle
    assert crops[0, 1, 1].sum() == 0                       # margin around it


def test_crop_is_clamped_at_the_frame_border():
    frame = np.full((1, H, W, 3), 50, np.uint8)
    box = np.array([[-20, -10, 40, 50]], np.float32)       # face partly off the top-left corner
    assert square_window(box[0], H, W, 1.3) == (0, 78, 0, 78)
    big = np.array([0, 0, 400, 300], np.float32)           # square larger than the frame: shrunk to fit
    assert square_window(big, H, W, 1.3) == (0, H, 80, 320)     # centred on x=200, then kept inside
    track = Track(box, np.ones(1, np.float32), np.ones(1, bool), np.zeros(1, np.int64))
    crops, valid = crop_faces(frame, track, crop=32)
    assert valid.all() and (crops == 50).all()             # only frame pixels, no padding


@pytest.mark.parametrize("fallback, expect_valid", [("missing", False), ("frame", True)])
def test_fallback_for_frames_without_the_subject(fallback, expect_valid):
    frames = np.full((2, H, W, 3), 90, np.uint8)
    track = Track(np.array([[100, 100, 160, 160], [np.nan] * 4], np.float32), np.array([1, 0], np.float32),
                  np.array([True, False]), np.array([0, -1]))
    crops, valid = crop_faces(frames, track, crop=48, fallback=fallback)
    assert valid.tolist() == [True, expect_valid]
    assert (crops[1] == 90).all() == expect_valid

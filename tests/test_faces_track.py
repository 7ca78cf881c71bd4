"""Subject selection, following, smoothing and square crops, on hand-made detections (no network runs)."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.core.config import ConfigError, identity_of
from stages.faces import Detections, FaceConfig, Track, crop_faces, select_subject
from stages.faces.crop import square_window
from stages.faces.track import reference_boxes, smooth_boxes

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


# ---- the subject is the best track (issue 18's coverage point) ------------------------------------------
def spurious_box_clip() -> list[Detections]:
    """A 40 px face in 7 of 8 frames (missed in frame 5) and, in frame 3 only, a confident 200 px box
    elsewhere (a detector false positive, as on dfdc_part10_yhffcuhhjy)."""
    frames = []
    for t in range(8):
        faces = [] if t == 5 else [(box_at(250 + t, 170, 40), 0.97)]
        if t == 3:
            faces.append(((0, 0, 200, 200), 0.98))
        frames.append(dets(*faces))
    return frames


def jerk_clip() -> list[Detections]:
    """One person whose head jerks right in frame 5 (the largest box of the clip): frame 5 continues neither
    neighbour (frame 4 moved left, frame 6 is back) but does continue frame 3, and frame 6 continues frame 4
    (liveportrait_driving_d12)."""
    xs = [100, 100, 100, 100, 80, 125, 85, 90]
    return [dets((box_at(x, 120, 66 if t == 5 else 60), 0.99)) for t, x in enumerate(xs)]


def test_a_one_frame_spurious_big_box_loses_to_a_face_seen_in_most_frames():
    track = select_subject(spurious_box_clip(), (H, W), FaceConfig(smooth=1))
    assert track.found.tolist() == [True] * 5 + [False] + [True] * 2
    centres = (track.boxes[track.found, :2] + track.boxes[track.found, 2:]) / 2
    np.testing.assert_allclose(centres[:, 1], 170)                  # the 40 px face, never the big box
    assert (track.boxes[track.found, 2] - track.boxes[track.found, 0] == 40).all()


def test_a_one_frame_jerk_keeps_the_track_whole():
    track = select_subject(jerk_clip(), (H, W), FaceConfig(smooth=1))
    assert track.found.all()
    np.testing.assert_allclose((track.boxes[:, 0] + track.boxes[:, 2]) / 2, [100, 100, 100, 100, 80, 125, 85, 90])


def test_the_largest_rule_is_the_rule_before_tracks():
    """subject='largest': seeded at the largest confident face and followed from its last box only."""
    cfg = FaceConfig(smooth=1, subject="largest")
    track = select_subject(spurious_box_clip(), (H, W), cfg)
    assert track.found.tolist() == [False, False, False, True, False, False, False, False]
    assert track.boxes[3].tolist() == [0, 0, 200, 200]
    track = select_subject(jerk_clip(), (H, W), cfg)           # seeded at the jerk, which its neighbours miss
    assert track.found.tolist() == [True, True, True, True, False, True, False, False]


def test_a_two_person_clip_keeps_the_larger_person_even_if_it_is_missed_once():
    """Box sides, not frame counts, decide: 60 px in 7 of 8 frames beats 40 px (more confident) in all 8."""
    frames = [dets(*([] if t == 2 else [(box_at(90 + 2 * t, 120, 60), 0.95)]), (box_at(250, 80, 40), 0.999))
              for t in range(8)]
    track = select_subject(frames, (H, W), FaceConfig(smooth=1))
    assert track.found.tolist() == [True, True, False] + [True] * 5
    np.testing.assert_allclose(track.boxes[track.found, 2] - track.boxes[track.found, 0], 60)


def test_a_dim_subject_lost_in_several_frames_keeps_its_weight_over_a_smaller_face():
    """60 px, lost in 3 dim frames in the middle (5 of 8 found: 300 px of sides) against 45 px found in all 8
    (360): the track spans all 8 frames, so it weighs 480 and stays the subject; frames it was never seen
    before or after count for nothing (a 60 px face seen only in the last 5 frames weighs 300 and loses)."""
    lost = (2, 3, 4)
    frames = [dets(*([] if t in lost else [(box_at(90, 120, 60), 0.95)]), (box_at(250, 80, 45), 0.999))
              for t in range(8)]
    track = select_subject(frames, (H, W), FaceConfig(smooth=1))
    assert track.found.tolist() == [t not in lost for t in range(8)]
    np.testing.assert_allclose(track.boxes[track.found, 2] - track.boxes[track.found, 0], 60)
    late = [dets(*([] if t < 3 else [(box_at(90, 120, 60), 0.95)]), (box_at(250, 80, 45), 0.999)) for t in range(8)]
    track = select_subject(late, (H, W), FaceConfig(smooth=1))
    assert track.found.all() and (track.boxes[:, 2] - track.boxes[:, 0] == 45).all()


def test_a_larger_person_entering_late_does_not_take_the_track():
    """Someone larger walks in for the last three frames on the other side: the subject seen throughout stays
    (the largest-face rule would switch to the newcomer and lose the first five frames)."""
    frames = []
    for t in range(8):
        faces = [(box_at(80 + 3 * t, 120, 60), 0.98)]
        if t >= 5:
            faces.append((box_at(250, 110, 70), 0.9999))
        frames.append(dets(*faces))
    track = select_subject(frames, (H, W), FaceConfig(smooth=1))
    assert track.found.all()
    np.testing.assert_allclose((track.boxes[:, 0] + track.boxes[:, 2]) / 2, [80 + 3 * t for t in range(8)])
    assert not select_subject(frames, (H, W), FaceConfig(smooth=1, subject="largest")).found[:5].any()


def test_reference_boxes_are_the_two_boxes_the_tracker_compared_with():
    frames = jerk_clip()
    frames[6] = dets()                                  # missed: the tracker compared it with frames 5 and 4
    cfg = FaceConfig(smooth=1)
    track = select_subject(frames, (H, W), cfg)
    assert not track.found[6] and track.found[7]      # frame 7 continues frame 4 (second box remembered)
    ref = reference_boxes(frames, track, cfg)           # (T, 2, 4): latest box first, NaN where none
    assert ref.shape == (8, 2, 4)
    np.testing.assert_array_equal(ref[6], [frames[5].boxes[0], frames[4].boxes[0]])
    np.testing.assert_array_equal(ref[7], [frames[5].boxes[0], frames[4].boxes[0]])
    assert np.isnan(ref[track.seed]).all()
    largest = FaceConfig(smooth=1, subject="largest")
    ref = reference_boxes(frames, select_subject(frames, (H, W), largest), largest)
    assert np.isnan(ref[:, 1]).all()                    # one box remembered


def test_the_subject_rule_is_in_the_identity_and_validated():
    assert identity_of(FaceConfig())["subject"] == "track"
    assert identity_of(FaceConfig(subject="largest"))["subject"] == "largest"
    with pytest.raises(ConfigError):
        FaceConfig(subject="biggest")

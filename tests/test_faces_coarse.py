"""Coarse-first detection (``FaceConfig.coarse_min_face``): cheaper, and the same subject with the same boxes.

The acceptance criterion: on the sample clips and generated photos here (and on every dev clip in
``bench/faces_coarse.py``, which needs the research clips this repository does not ship), the subject's track
(``select_subject``) has the same found frames as with the whole search, and its boxes are at IoU >= 0.9 with
the whole search's, frame by frame.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data

from pipeline.core.config import ConfigError
from stages.faces import FaceConfig, FaceDetector, select_subject
from stages.faces import boxes as bx
from stages.faces.coarse import CoarseSearch

COARSE = FaceConfig()                       # the default: coarse_min_face 79


@pytest.fixture(scope="module")
def whole() -> FaceDetector:
    return FaceDetector(FaceConfig(coarse_min_face=0), device="cpu")


@pytest.fixture(scope="module")
def coarse() -> FaceDetector:
    return FaceDetector(COARSE, device="cpu")


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt, rb = np.maximum(a[:, :2], b[:, :2]), np.minimum(a[:, 2:], b[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def same_subject(frames: np.ndarray, whole: FaceDetector, coarse: FaceDetector) -> tuple[int, int, float]:
    """Assert the acceptance criterion on one clip; -> (frames found, faces reported, min IoU)."""
    hw = frames.shape[1:3]
    ref = select_subject(whole.detect(frames), hw, whole.cfg)
    got = select_subject(coarse.detect(frames), hw, coarse.cfg)
    np.testing.assert_array_equal(got.found, ref.found)
    iou = _box_iou(got.boxes[ref.found], ref.boxes[ref.found]) if ref.found.any() else np.ones(1)
    assert iou.min() >= 0.9, f"subject boxes moved: IoU {np.round(iou, 3)}"
    return int(ref.found.sum()), len(frames), float(iou.min())


def test_level_windows_are_the_whole_levels_pixels():
    rng = np.random.default_rng(1)
    images = torch.from_numpy(rng.integers(0, 256, (2, 75, 101, 3), dtype=np.uint8))
    table = bx.integral_image(images)
    for scale in (0.6, 0.3, 0.17):
        size = bx.level_size(75, 101, scale)
        level = bx.area_level(table, size)
        origin = torch.tensor([[0, 0], [min(2, size[0] - 12), min(4, size[1] - 13)], [size[0] - 12, size[1] - 13]])
        frame = torch.tensor([1, 0, 1])
        got = bx.level_windows(table, bx.level_bins(table, size), frame, origin, (12, 13))
        for k, (r, c) in enumerate(origin.tolist()):
            assert torch.equal(got[k], level[frame[k], :, r:r + 12, c:c + 13])   # bit for bit


def test_region_search_gives_the_whole_levels_candidates(whole, monkeypatch):
    """Every P-Net window of the whole level that overlaps a core comes out of region_pnet, with its
    score; nothing else that is not a window of the whole level does."""
    frames = np.stack([data.astronaut(), np.ascontiguousarray(data.astronaut()[::-1, ::-1])])
    table = bx.integral_image(torch.from_numpy(frames))
    monkeypatch.setattr(bx, "nms", lambda rows, frame, iou: torch.arange(len(rows)))   # all candidates
    scales = bx.pyramid_scales(512, 512, 20.0, 0.709)[:4]
    ref, ref_frame, _ = whole._pnet_levels(table, scales)
    cores = torch.tensor([[170., 55., 270., 175.], [3., 400., 61., 509.], [240., 330., 343., 341.]])
    frame = torch.tensor([0, 1, 1])
    got, got_frame, _ = CoarseSearch(whole).region_pnet(table, scales, cores, frame, torch.zeros(3))

    def keyed(rows, where):
        return {(int(f), *r[:4].round().long().tolist()): r for r, f in zip(rows, where)}

    ref_k, got_k = keyed(ref, ref_frame), keyed(got, got_frame)
    assert set(got_k) <= set(ref_k)
    for key, row in ref_k.items():
        f, x1, y1, x2, y2 = key
        if any(int(frame[i]) == f and x1 < cores[i, 2] and x2 > cores[i, 0] and y1 < cores[i, 3] and y2 > cores[i, 1]
               for i in range(len(cores))):
            assert key in got_k, f"window {key} overlapping a core is missing"
            torch.testing.assert_close(got_k[key], row, atol=1e-4, rtol=0)
    assert len(got_k) > 50


def test_on_by_default_and_validated():
    assert FaceConfig().coarse_min_face == 79
    with pytest.raises(ConfigError):
        FaceConfig(coarse_min_face=-1)
    with pytest.raises(ConfigError):
        FaceConfig(coarse_min_face=56, coarse_nms=0)


def test_no_face_and_tiny_frames(coarse):
    grey = np.stack([getattr(data, name)()[:256, :256] for name in ("brick", "grass", "gravel")])
    for d in coarse.detect(np.repeat(grey[..., None], 3, axis=3)):
        assert len(d) == 0 and d.boxes.shape == (0, 4)
    assert coarse.detect(np.zeros((0, 64, 64, 3), np.uint8)) == []
    assert len(coarse.detect(np.zeros((2, 8, 8, 3), np.uint8))[0]) == 0


def test_same_subject_on_photos_and_with_two_threads(whole, coarse):
    from skimage import transform
    ast = data.astronaut()
    frames = np.stack([(transform.warp(ast, transform.AffineTransform(scale=s, translation=(d, -d)).inverse,
                                       output_shape=(480, 640)) * 255).round().astype(np.uint8)
                       for s, d in ((0.3, 40), (0.4, 10), (0.6, 0), (0.25, 120), (0.5, 60))])
    same_subject(frames, whole, coarse)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = coarse.detect(frames)
        torch.set_num_threads(2)
        two = coarse.detect(frames)
    finally:
        torch.set_num_threads(before)
    for a, b in zip(one, two):
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)


@pytest.mark.slow
def test_same_subject_on_sample_clips(sample_dataset, whole, coarse):
    from stages.decode import sample_frames
    clips = sorted(sample_dataset.rglob("*.mp4"))
    assert clips
    for path in clips:
        found, _, _ = same_subject(sample_frames(path, 16).frames, whole, coarse)
        assert found > 0


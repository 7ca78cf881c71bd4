"""The batched MTCNN: weights, known answers, parity with facenet-pytorch, batching, bad input."""
from __future__ import annotations

import contextlib
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data, transform

from stages.faces import Detections, FaceConfig, FaceDetector, FaceError
from stages.faces import boxes as bx


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector(FaceConfig(coarse_min_face=0), device="cpu")   # the whole search, as the reference


@pytest.fixture(scope="module")
def reference():
    """facenet-pytorch's MTCNN (same weights, its own cascade). Missing means a broken test env: fail."""
    try:
        from facenet_pytorch import MTCNN
    except ImportError as exc:
        pytest.fail("facenet-pytorch is the parity reference and must be installed: "
                    f"pip install --no-deps facenet-pytorch==2.6.0 requests tqdm ({exc})")
    return MTCNN(keep_all=True, post_process=False, device="cpu")


@contextlib.contextmanager
def _one_thread():
    """The reference's many tiny ops crawl with 2 intra-op threads when other jobs share the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _warped(img: np.ndarray, angle: float, scale: float, dx: float, dy: float, size=(256, 256)) -> np.ndarray:
    tf = transform.AffineTransform(scale=scale, rotation=np.deg2rad(angle), translation=(dx, dy))
    return (transform.warp(img, tf.inverse, output_shape=size) * 255).round().astype(np.uint8)


def _grace_hopper() -> np.ndarray:
    from matplotlib import cbook
    from PIL import Image
    with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as im:
        return np.asarray(im.convert("RGB"))


def _photo_frames() -> list[np.ndarray]:
    """Batches of equal-size frames: the two photos as shipped and with small shifts, scales, rotations."""
    ast, grace = data.astronaut(), _grace_hopper()
    moves = [(6, 0.6, 10, -20), (-9, 0.5, -15, 5), (3, 0.45, 30, 30)]
    return [ast[None], grace[None],
            np.stack([_warped(ast, *m) for m in moves]
                     + [_warped(grace, a, s * 0.8, dx, dy) for a, s, dx, dy in moves])]


def _sample_clip_frames(tmp_path) -> list[np.ndarray]:
    """Frames decoded from generated sample clips (real photos filmed by a virtual camera, H.264)."""
    from pipeline.sample import SampleConfig, run
    from stages.decode import sample_frames
    out = run(SampleConfig(out=str(tmp_path / "sample"), videos=2, frames=6, width=256, height=256))
    return [sample_frames(p, 3).frames for p in sorted(out.rglob("*.mp4"))]


def _assert_parity(ours: list[Detections], boxes, probs) -> int:
    """Same number of faces per frame; each of ours matches a reference box at IoU >= 0.9, prob within 0.01."""
    from torchvision.ops import box_iou
    matched = 0
    for t, d in enumerate(ours):
        ref_b = np.zeros((0, 4), np.float32) if boxes[t] is None else np.asarray(boxes[t], np.float32)
        ref_p = np.zeros(0, np.float32) if boxes[t] is None else np.asarray(probs[t], np.float32)
        assert len(d) == len(ref_b), f"frame {t}: {len(d)} faces, reference {len(ref_b)}"
        if len(d):
            iou = box_iou(torch.from_numpy(d.boxes), torch.from_numpy(ref_b)).numpy()
            j = iou.argmax(axis=1)
            assert len(set(j.tolist())) == len(d), f"frame {t}: two boxes matched one reference box"
            assert iou.max(axis=1).min() >= 0.9, f"frame {t}: IoU {iou.max(axis=1)}"
            assert np.abs(d.probs - ref_p[j]).max() <= 0.01, f"frame {t}: {d.probs} vs {ref_p[j]}"
            matched += len(d)
    return matched


def test_weights_come_from_the_mtcnn_package_without_tensorflow(detector):
    assert "tensorflow" not in sys.modules and "mtcnn" not in sys.modules
    info = detector.describe()
    assert set(info["weights_sha256"]) == {"pnet", "rnet", "onet"}
    assert info["chunk_source"] and info["cpu_capability"]     # the machine-dependent choice is recorded


def test_astronaut_has_one_face_with_landmarks_on_the_face(detector):
    (d,) = detector.detect(data.astronaut()[None])
    assert len(d) == 1 and d.probs[0] > 0.99
    np.testing.assert_allclose(d.boxes[0], [179, 61, 266, 172], atol=6)
    # eyes, nose, mouth corners (facts in /work/shared/notes/mtcnn-weights.md)
    expected = [[204, 100], [247, 102], [224, 128], [201, 139], [245, 142]]
    np.testing.assert_allclose(d.landmarks[0], expected, atol=5)


def test_textures_have_no_face(detector):
    grey = np.stack([getattr(data, name)()[:256, :256] for name in ("brick", "grass", "gravel")])
    for d in detector.detect(np.repeat(grey[..., None], 3, axis=3)):
        assert len(d) == 0 and d.boxes.shape == (0, 4) and d.landmarks.shape == (0, 5, 2)


def test_parity_with_facenet_pytorch(detector, reference, tmp_path):
    batches = _photo_frames() + _sample_clip_frames(tmp_path)
    matched = 0
    for frames in batches:
        with _one_thread():
            boxes, probs = reference.detect(frames)
        matched += _assert_parity(detector.detect(frames), boxes, probs)
    assert matched >= 12      # the comparison really compared faces


def test_batched_equals_one_frame_at_a_time(detector):
    frames = _photo_frames()[2][[0, 1, 3, 4]]
    batched = detector.detect(frames)
    for frame, d in zip(frames, batched):
        (single,) = detector.detect(frame[None])
        assert len(single) == len(d)
        # Same boxes up to float rounding: the R-/O-Net matrix products may pick a different kernel for a
        # different number of candidates (summation order), which moves a box by ~1e-5 px.
        np.testing.assert_allclose(single.boxes, d.boxes, atol=1e-3)
        np.testing.assert_allclose(single.probs, d.probs, atol=1e-5)
        np.testing.assert_allclose(single.landmarks, d.landmarks, atol=1e-3)


def test_large_frames_are_downscaled_and_boxes_mapped_back(detector):
    (small,) = detector.detect(data.astronaut()[None])
    frame = np.full((2160, 3840, 3), 90, np.uint8)                   # a 4K frame
    frame[100:2148, 1000:3048] = np.repeat(np.repeat(data.astronaut(), 4, axis=0), 4, axis=1)
    assert detector.detection_size(2160, 3840) == (540, 960)
    (big,) = detector.detect(frame[None])
    assert len(big) == 1
    np.testing.assert_allclose(big.boxes[0], small.boxes[0] * 4 + [1000, 100, 1000, 100], atol=16)


def test_bad_input_gives_empty_results(detector):
    assert detector.detect(np.zeros((0, 64, 64, 3), np.uint8)) == []
    grey, tiny = detector.detect(np.full((1, 240, 320, 3), 128, np.uint8)) + \
        detector.detect(np.zeros((1, 8, 8, 3), np.uint8))
    assert len(grey) == 0 and len(tiny) == 0
    with pytest.raises(FaceError, match="uint8"):
        detector.detect(np.zeros((1, 64, 64, 3), np.float32))
    with pytest.raises(FaceError, match="shape"):
        detector.detect(np.zeros((64, 64), np.uint8))


def test_area_crops_equal_per_box_interpolate():
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (3, 40, 50, 3), dtype=np.uint8))
    windows = torch.tensor([[0, 40, 0, 50], [3, 30, 7, 19], [10, 11, 20, 21], [5, 38, 1, 49]])
    frame = torch.tensor([0, 1, 2, 1])
    got = bx.area_crops(bx.integral_image(images), frame, windows, 24)
    for k, (y0, y1, x0, x1) in enumerate(windows.tolist()):
        patch = images[frame[k], y0:y1, x0:x1].permute(2, 0, 1)[None].float()
        want = F.interpolate(patch, size=(24, 24), mode="area")[0]
        torch.testing.assert_close(got[k], want, atol=1e-4, rtol=0)


def test_min_nms_suppresses_nested_boxes_within_a_frame_only():
    rows = torch.tensor([[0, 0, 100, 100, 0.99], [10, 10, 50, 50, 0.98], [200, 200, 260, 260, 0.97],
                         [10, 10, 50, 50, 0.96]], dtype=torch.float32)
    frame = torch.tensor([0, 0, 0, 1])
    keep = bx.nms_min(rows, frame, 0.7).tolist()
    assert keep == [0, 2, 3]      # the nested box goes (IoU alone would keep it); frame 1's copy stays

"""Robustness perturbations: each one changes the frames as specified, deterministically, before detection,
and a perturbed store says so in its identity and provenance."""
from __future__ import annotations

import io
import subprocess

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from skimage import data as skdata

from pipeline.core.config import ConfigError, build, identity_of
from stages import perturb
from stages.media import ffmpeg_cmd
from stages.preprocess import FeatureConfig


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    """Three real-photo frames (K, H, W, 3) uint8 with odd sizes, as decoded video gives them."""
    face = skdata.astronaut()[:190:2, 60:311:2]                    # (95, 126, 3): odd height
    return np.stack([face, np.roll(face, 5, axis=1), face[:, ::-1]]).copy()


def test_parse_names_kind_and_level_and_refuses_anything_else():
    p = perturb.parse("JPEG:3")
    assert (p.kind, p.level, p.name, p.param) == ("jpeg", 3, "jpeg:3", 15)
    assert perturb.parse("h264:5").param == 40 and perturb.parse("blur:1").param == 7
    for bad in ("jpeg", "jpeg:0", "jpeg:6", "sharpen:2", "blur:two", ""):
        with pytest.raises(ConfigError, match="KIND:LEVEL.*jpeg, h264, blur, noise, resize, contrast, saturation"):
            perturb.parse(bad)
    with pytest.raises(ConfigError, match="perturbation 'blur:9'"):
        build(FeatureConfig, {"perturb": "blur:9"})                 # the features command refuses it up front


def test_every_kind_has_five_levels_getting_worse():
    """DeeperForensics-1.0's tables (and ImageNet-C's JPEG qualities): severity grows with the level."""
    assert set(perturb.LEVELS) == {"jpeg", "h264", "blur", "noise", "resize", "contrast", "saturation"}
    for kind, values in perturb.LEVELS.items():
        assert len(values) == 5, kind
        getting_worse = np.diff(values) > 0 if kind in ("h264", "blur", "noise", "resize") else np.diff(values) < 0
        assert getting_worse.all(), kind
    assert perturb.LEVELS["h264"] == (30, 32, 35, 38, 40) and perturb.LEVELS["noise"][-1] == 0.05


@pytest.mark.parametrize("level", [1, 5])
def test_jpeg_at_quality_q_equals_encoding_each_frame_at_q(frames, level):
    q = perturb.LEVELS["jpeg"][level - 1]
    out = perturb.parse(f"jpeg:{level}").apply(frames, "v")
    for got, frame in zip(out, frames):
        buf = io.BytesIO()
        Image.fromarray(frame).save(buf, format="JPEG", quality=q)
        assert np.array_equal(got, np.asarray(Image.open(buf).convert("RGB")))
    assert not np.array_equal(out, frames)


def test_h264_equals_an_x264_encode_at_that_crf(frames, tmp_path):
    """Written as an MP4 by a separate ffmpeg call with the same x264 settings, then decoded: the same pixels."""
    even = frames[:, :94]                                           # the reference needs no padding
    crf = perturb.LEVELS["h264"][2]
    k, h, w, _ = even.shape
    clip = tmp_path / "ref.mp4"
    subprocess.run([*ffmpeg_cmd(), "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
                    "-r", "25", "-i", "pipe:0", "-c:v", "libx264", "-preset", "medium", "-threads", "1",
                    "-pix_fmt", "yuv420p", "-crf", str(crf), str(clip)], input=even.tobytes(), check=True)
    raw = subprocess.run([*ffmpeg_cmd(), "-loglevel", "error", "-i", str(clip), "-f", "rawvideo", "-pix_fmt", "rgb24",
                          "pipe:1"], capture_output=True, check=True).stdout
    expected = np.frombuffer(raw, np.uint8).reshape(k, h, w, 3)
    assert np.array_equal(perturb.parse("h264:3").apply(even, "v"), expected)
    odd = perturb.parse("h264:3").apply(frames, "v")                # odd sizes are padded, then cropped back
    assert odd.shape == frames.shape and odd.dtype == np.uint8


def test_h264_and_jpeg_lose_more_at_higher_levels(frames):
    def psnr(a, b):
        return 10 * np.log10(255 ** 2 / np.mean((a.astype(float) - b) ** 2))
    for kind in ("h264", "jpeg", "blur", "resize"):
        scores = [psnr(perturb.parse(f"{kind}:{lv}").apply(frames, "v"), frames) for lv in (1, 3, 5)]
        assert scores[0] > scores[1] > scores[2], (kind, scores)


@pytest.mark.parametrize("level", [1, 4])
def test_blur_is_a_gaussian_of_the_documented_size_with_mirrored_borders(frames, level):
    """OpenCV's GaussianBlur(k, k, k/6) as DeeperForensics uses it: kernel k, sigma k/6, BORDER_REFLECT_101."""
    k = perturb.LEVELS["blur"][level - 1]
    sigma = k / 6
    expected = ndimage.gaussian_filter(frames.astype(float), sigma=(0, sigma, sigma, 0),
                                       truncate=((k - 1) / 2) / sigma, mode="mirror")
    got = perturb.parse(f"blur:{level}").apply(frames, "v").astype(float)
    diff = np.abs(got - np.rint(np.clip(expected, 0, 255)))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.999


def test_noise_has_the_documented_variance_and_depends_only_on_the_video_id():
    grey = np.full((4, 64, 64, 3), 128, np.uint8)                   # mid-grey: nothing is clipped
    p = perturb.parse("noise:3")                                    # variance 0.005 on [0, 1]
    a, b = p.apply(grey, "real/a.mp4"), p.apply(grey, "real/b.mp4")
    assert np.array_equal(a, p.apply(grey.copy(), "real/a.mp4"))   # the same video: the same noise, always
    assert not np.array_equal(a, b)
    luma = perturb.to_ycbcr(a)[..., 0] - 128
    assert luma.std() == pytest.approx(np.sqrt(0.005) * 255, rel=0.05)
    assert abs(luma.mean()) < 0.5


def test_resize_keeps_smooth_content_and_loses_fine_detail():
    ramp = np.broadcast_to(np.linspace(20, 230, 96)[None, None, :, None], (1, 64, 96, 3)).round().astype(np.uint8)
    out = perturb.parse("resize:2").apply(ramp, "v")                # down by 3 and back up, bilinear
    assert np.abs(out[:, 8:-8, 8:-8].astype(int) - ramp[:, 8:-8, 8:-8]).max() <= 1
    checker = ((np.indices((64, 96)).sum(0) % 2) * 255).astype(np.uint8)[None, ..., None].repeat(3, -1)
    flat = perturb.parse("resize:1").apply(checker, "v")
    assert flat.shape == checker.shape and flat.std() < 0.05 * checker.std()


def test_contrast_scales_and_truncates_every_intensity():
    values = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, -1)
    for level, c in enumerate(perturb.LEVELS["contrast"], start=1):
        got = perturb.parse(f"contrast:{level}").apply(values, "v")
        assert np.array_equal(got, np.floor(values * c + 1e-9).astype(np.uint8)), level


def test_saturation_scales_chroma_and_keeps_luma(frames):
    src = perturb.to_ycbcr(frames)
    for level in (1, 5):
        s = perturb.LEVELS["saturation"][level - 1]
        out = perturb.to_ycbcr(perturb.parse(f"saturation:{level}").apply(frames, "v"))
        assert np.abs(out[..., 0] - src[..., 0]).max() < 1.5                       # luma kept
        assert np.abs(out[..., 1:] - (128 + s * (src[..., 1:] - 128))).max() < 2.5   # chroma scaled
    grey = perturb.parse("saturation:5").apply(frames, "v").astype(int)
    assert np.abs(grey[..., 0] - grey[..., 1]).max() <= 1 and np.abs(grey[..., 2] - grey[..., 1]).max() <= 1


def test_an_unperturbed_config_keeps_the_identity_stores_always_had():
    assert "perturb" not in identity_of(FeatureConfig())
    assert identity_of(FeatureConfig(perturb="blur:2"))["perturb"] == "blur:2"


def test_face_stage_detects_on_the_perturbed_frames(sample_dataset, monkeypatch):
    """The perturbation sits between decoding and detection: the detector sees exactly perturb(decoded)."""
    from pipeline.core.videos import VideoEntry
    from stages.decode import sample_frames
    from stages.faces import FaceConfig
    from stages.preprocess import FaceStage
    clip = sorted((sample_dataset / "fake").glob("*.mp4"))[0]
    stage = FaceStage(FeatureConfig(frames=4, crop=64, perturb="noise:4"), FaceConfig(), device="cpu")
    seen = []
    detect = stage.detector.detect
    monkeypatch.setattr(stage.detector, "detect", lambda f: seen.append(f.copy()) or detect(f))
    prepared = stage.run(VideoEntry("fake/x.mp4", str(clip), 1))
    decoded = sample_frames(str(clip), 4, "noref").frames
    assert np.array_equal(seen[0], perturb.parse("noise:4").apply(decoded, "fake/x.mp4"))
    assert not np.array_equal(seen[0], decoded) and prepared.result.status == 1


def test_a_perturbed_store_records_the_perturbation(perturbed_store, sample_store):
    from features.store import FeatureStore
    with FeatureStore.open(perturbed_store) as st, FeatureStore.open(sample_store) as clean:
        assert st.identity["perturb"] == "jpeg:3" and "perturb" not in clean.identity
        rest = {k: v for k, v in st.identity.items() if k != "perturb"}
        assert rest == clean.identity                                # nothing else differs
        prov = st.provenance
        assert prov["perturbation"] == {**prov["perturbation"], "kind": "jpeg", "level": 3, "value": 15}
        assert prov["config"]["features"]["perturb"] == "jpeg:3"
        ids = sorted(r.video_id for r in clean.videos())
        assert sorted(r.video_id for r in st.videos()) == ids
        a, _ = st.load(ids)
        b, _ = clean.load(ids)
        assert not np.array_equal(a, b)                              # the features saw degraded frames


def test_inspect_shows_what_was_done_to_the_frames(perturbed_store, sample_store):
    from tests.conftest import cli
    row = lambda store: next(ln for ln in cli("inspect", str(store)).stdout.splitlines()   # noqa: E731
                             if "perturbation" in ln)
    assert "jpeg:3: JPEG quality 15 (level 3 of 5, ImageNet-C" in row(perturbed_store)
    assert row(sample_store).split("perturbation", 1)[1].strip(" │|").strip() == "none"

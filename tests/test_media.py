"""ffmpeg resolution order, probing without ffprobe, and exact evenly spaced frame sampling."""
from __future__ import annotations

import stat

import imageio_ffmpeg
import numpy as np
import pytest

from stages.decode import frame_indices, sample_frames
from stages.media import MediaError, resolve_ffmpeg
from stages.probe import probe
from tests import clips


def _fake_exe(folder, name="ffmpeg"):
    folder.mkdir(parents=True, exist_ok=True)
    exe = folder / name
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return exe


def test_ffmpeg_binary_env_wins(tmp_path):
    exe = _fake_exe(tmp_path / "custom", "my-ffmpeg")
    on_path = _fake_exe(tmp_path / "bin")
    assert resolve_ffmpeg({"FFMPEG_BINARY": str(exe), "PATH": str(on_path.parent)}) == str(exe)


def test_ffmpeg_on_path_comes_second(tmp_path):
    on_path = _fake_exe(tmp_path / "bin")
    assert resolve_ffmpeg({"PATH": str(on_path.parent)}) == str(on_path)


def test_imageio_ffmpeg_is_the_fallback(tmp_path):
    (tmp_path / "empty").mkdir()
    assert resolve_ffmpeg({"PATH": str(tmp_path / "empty")}) == imageio_ffmpeg.get_ffmpeg_exe()


def test_bad_ffmpeg_binary_env_is_a_clear_error(tmp_path):
    with pytest.raises(MediaError, match="FFMPEG_BINARY"):
        resolve_ffmpeg({"FFMPEG_BINARY": str(tmp_path / "nope"), "PATH": ""})


def test_frame_indices_span_the_whole_video():
    idx = frame_indices(300, 16)
    assert idx[0] == 0 and idx[-1] == 299 and len(set(idx)) == 16
    assert np.all(np.diff(idx) >= 19) and np.all(np.diff(idx) <= 20)
    assert list(frame_indices(5, 16)) == [0, 1, 2, 3, 4]          # short: every frame, nothing repeated


def test_probe_reads_size_fps_and_exact_frame_count(tmp_path):
    clip = clips.counter_clip(tmp_path / "c.mp4", 37, size=(48, 64), fps=12)
    info = probe(clip)
    assert (info.width, info.height, info.n_frames, info.rotation) == (64, 48, 37, 0)
    assert info.fps == pytest.approx(12) and info.duration == pytest.approx(37 / 12, abs=0.1)


def test_sampled_frames_are_the_exact_evenly_spaced_ones(tmp_path):
    clip = clips.counter_clip(tmp_path / "c.mp4", 100, fps=10)
    s = sample_frames(clip, 8)
    assert list(s.indices) == list(frame_indices(100, 8))
    means = s.frames.reshape(8, -1).mean(axis=1)
    assert np.allclose(means, s.indices * 2 % 256, atol=1.5)        # the decoded frame is the indexed one
    assert np.allclose(s.timestamps, s.indices / 10, atol=1e-3)


def test_short_video_gives_all_frames_once(tmp_path):
    s = sample_frames(clips.counter_clip(tmp_path / "c.mp4", 5), 16)
    assert list(s.indices) == [0, 1, 2, 3, 4] and len(s.frames) == 5


def test_rotation_metadata_is_honoured(tmp_path):
    frames = np.zeros((6, 40, 80, 3), np.uint8)
    frames[:, :, :40, 0] = 255                                     # left half red
    clip = clips.write_frames(tmp_path / "r.mp4", frames, rotate=90)
    info = probe(clip)
    assert info.rotation in (90, 270) and (info.width, info.height) == (40, 80)
    s = sample_frames(clip, 3)
    assert s.frames.shape == (3, 80, 40, 3)                         # delivered upright (portrait)


@pytest.mark.parametrize("make, reason", [
    (lambda p: clips.empty_file(p / "e.mp4"), "empty file"),
    (lambda p: clips.text_file(p / "t.mp4"), "not a readable media file"),
    (lambda p: clips.audio_only(p / "a.m4a"), "no video stream"),
    (lambda p: p / "missing.mp4", "no such file"),
])
def test_bad_inputs_raise_one_line_media_errors(tmp_path, make, reason):
    with pytest.raises(MediaError, match=reason) as err:
        sample_frames(make(tmp_path), 4)
    assert "\n" not in str(err.value)


def test_truncated_file_yields_frames_or_a_clear_error(tmp_path):
    full = clips.counter_clip(tmp_path / "c.mp4", 60, size=(96, 128))
    cut = clips.truncated(full, tmp_path / "cut.mp4", keep=0.5)
    try:
        s = sample_frames(cut, 8)
    except MediaError as exc:
        assert "\n" not in str(exc)
    else:
        assert 0 < len(s.frames) <= 8 and len(set(s.indices)) == len(s.indices)


def _moving(n: int, size=(72, 96)) -> np.ndarray:
    """Frames with a moving gradient and a frame counter: every frame differs, x264 uses B-frames."""
    h, w = size
    y, x = np.mgrid[0:h, 0:w]
    frames = np.stack([((x * 3 + y * 2 + 5 * t) % 256) for t in range(n)]).astype(np.uint8)
    out = np.repeat(frames[..., None], 3, axis=3)
    out[:, :8, :8, 1] = (np.arange(n) * 7 % 256)[:, None, None]
    return out


def _full_decode(path) -> np.ndarray:
    import subprocess

    from stages.media import ffmpeg_exe
    info = probe(path)
    raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(path), "-map", "0:v:0", "-fps_mode", "passthrough",
                          "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, info.height, info.width, 3)


def test_noref_sampling_delivers_the_full_decodes_frames_nearest_each_target(tmp_path):
    clip = clips.write_frames(tmp_path / "b.mp4", _moving(150), fps=25)   # x264 veryfast: B-frames
    info = probe(clip)
    assert info.codec == "h264" and info.noref_supported and info.n_frames == 150
    assert 0.2 < 1 - info.n_decodable / info.n_frames < 0.9                  # noref skips some, not all
    ref = _full_decode(clip)
    s = sample_frames(clip, 16, "noref")
    assert s.mode == "noref" and len(s.indices) == 16 and np.all(np.diff(s.indices) > 0)
    for frame, i in zip(s.frames, s.indices):
        assert np.array_equal(frame, ref[i])                                 # byte for byte
    allowed = np.flatnonzero(info.decodable)
    for target, i in zip(frame_indices(150, 16), s.indices):
        assert info.decodable[i] and abs(i - target) == np.abs(allowed - target).min()
    strict = sample_frames(clip, 16, "strict")
    assert strict.mode == "strict" and list(strict.indices) == list(frame_indices(150, 16))
    assert all(np.array_equal(f, ref[i]) for f, i in zip(strict.frames, strict.indices))


def test_noref_outputs_exactly_the_frames_the_probe_calls_decodable(tmp_path):
    import subprocess

    from stages.media import ffmpeg_exe
    clip = clips.write_frames(tmp_path / "b.mp4", _moving(90), fps=25)
    info = probe(clip)
    out = subprocess.run([ffmpeg_exe(), "-v", "error", "-skip_frame", "noref", "-i", str(clip), "-map", "0:v:0",
                          "-fps_mode", "passthrough", "-enc_time_base:v", "demux", "-f", "framemd5", "-"],
                         capture_output=True, text=True, check=True).stdout
    kept = [int(r.split(",")[2]) for r in out.splitlines() if r and not r.startswith("#")]
    assert kept == info.pts[info.decodable].tolist()


def test_frames_are_counted_from_frames_not_packets_after_a_stream_copied_cut(tmp_path):
    import subprocess

    from stages.media import ffmpeg_exe
    clip = clips.write_frames(tmp_path / "b.mp4", _moving(200), fps=25)
    cut = tmp_path / "cut.mp4"                  # starts between keyframes: an edit list hides the pre-roll
    subprocess.run([ffmpeg_exe(), "-v", "error", "-ss", "1.3", "-i", str(clip), "-t", "4", "-c", "copy",
                    str(cut)], check=True)
    info = probe(cut)
    ref = _full_decode(cut)
    assert info.n_packets > info.n_frames == len(ref)                        # more packets than frames
    for scheme in ("noref", "strict"):
        s = sample_frames(cut, 16, scheme)
        assert len(s.indices) == 16 and s.indices[-1] <= len(ref) - 1        # no "short video: 15 of 16"
        assert all(np.array_equal(f, ref[i]) for f, i in zip(s.frames, s.indices))


def test_all_intra_video_falls_back_to_strict(tmp_path):
    import subprocess

    from stages.media import ffmpeg_exe
    src = clips.write_frames(tmp_path / "b.mp4", _moving(60), fps=25)
    intra = tmp_path / "intra.mp4"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(src), "-c:v", "libx264", "-g", "1", str(intra)],
                   check=True)
    s = sample_frames(intra, 8, "noref")
    assert s.mode == "strict" and list(s.indices) == list(frame_indices(60, 8))


def _same_info(a, b) -> bool:
    return all(np.array_equal(getattr(a, k), getattr(b, k)) if isinstance(getattr(a, k), np.ndarray)
               else getattr(a, k) == getattr(b, k) for k in a.__dataclass_fields__)


@pytest.mark.parametrize("kind", ["bframes", "cut", "intra", "annexb", "mkv"])
def test_the_h264_fast_probe_equals_the_header_trace(tmp_path, kind, monkeypatch):
    """H.264 is probed from filter_units' outputs in one process; the general header-trace path must say
    exactly the same: frames, pts, which ones noref decoding outputs, packets."""
    import subprocess

    from stages import probe as P
    from stages.media import ffmpeg_exe
    clip = clips.write_frames(tmp_path / "b.mp4", _moving(120), fps=25)
    out = clip
    if kind != "bframes":
        out = tmp_path / ("x.h264" if kind == "annexb" else "x.mkv" if kind == "mkv" else "x.mp4")
        args = {"cut": ["-ss", "1.3", "-i", str(clip), "-t", "3", "-c", "copy"],
                "intra": ["-i", str(clip), "-c:v", "libx264", "-g", "1"],
                "annexb": ["-i", str(clip), "-c", "copy", "-bsf:v", "h264_mp4toannexb"],
                "mkv": ["-i", str(clip), "-c", "copy"]}[kind]
        subprocess.run([ffmpeg_exe(), "-v", "error", *args, str(out)], check=True)
    traced = P._probe_traced(out, 60)
    calls = []
    real = P._h264_outputs
    monkeypatch.setattr(P, "_h264_outputs", lambda *a: calls.append(1) or real(*a))
    fast = P.probe(out)
    assert calls and real(out, 60) is not None                # the fast path ran and was used
    assert fast.codec == "h264" and _same_info(fast, traced)


def test_other_codecs_take_the_general_probe(tmp_path, monkeypatch):
    import subprocess

    from stages import probe as P
    from stages.media import ffmpeg_exe
    src = clips.write_frames(tmp_path / "b.mp4", _moving(40), fps=25)
    mp4v = tmp_path / "m.mp4"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(src), "-c:v", "mpeg4", str(mp4v)], check=True)
    used = []
    real = P._probe_traced
    monkeypatch.setattr(P, "_probe_traced", lambda *a: used.append(1) or real(*a))
    info = P.probe(mp4v)
    assert used and info.codec == "mpeg4" and info.n_frames == 40 and not info.noref_supported

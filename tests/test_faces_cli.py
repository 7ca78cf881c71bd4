"""``python -m pipeline faces VIDEO``: per-frame boxes and the chosen track, JSON, and the contact sheet."""
from __future__ import annotations

import json

import numpy as np
from PIL import Image
from skimage import data, transform

from pipeline.cli import main
from tests.clips import write_frames


def _astronaut_clip(path, n=4, size=256):
    """A face panning slowly across n frames, then a frame with no face."""
    face = (transform.resize(data.astronaut(), (size, size), anti_aliasing=True) * 255).astype(np.uint8)
    frames = np.stack([np.roll(face, 6 * t, axis=1) for t in range(n)] + [np.full_like(face, 120)])
    return write_frames(path, frames, fps=5)


def test_faces_json_and_sheet(tmp_path, capsys):
    video = _astronaut_clip(tmp_path / "face.mp4")
    sheet = tmp_path / "sheet.png"
    assert main(["faces", str(video), "--frames", "5", "--json", "--sheet", str(sheet)]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["frames_sampled"] == 5 and res["subject_found"] == 4
    frames = res["frames"]
    assert [len(f["faces"]) for f in frames] == [1, 1, 1, 1, 0]
    assert [f["subject"] for f in frames] == [0, 0, 0, 0, None]
    x1 = [f["subject_box"][0] for f in frames[:4]]
    assert np.all(np.diff(x1) > 0)                      # the box follows the face as it moves right
    assert frames[0]["faces"][0]["prob"] > 0.99 and len(frames[0]["faces"][0]["landmarks"]) == 5
    assert res["detector"]["config"]["min_face"] == 20
    with Image.open(sheet) as im:
        assert im.width > 320 and im.height >= 5 * 100


def test_faces_table_explains_when_no_face_is_found(tmp_path, capsys):
    video = write_frames(tmp_path / "grey.mp4", np.full((3, 64, 96, 3), 128, np.uint8), fps=5)
    assert main(["faces", str(video), "--frames", "3", "--min-face", "30"]) == 0
    out = capsys.readouterr().out
    assert "no face found" in out and "--min-face" in out and "subject found in 0/3" in out


def test_faces_bad_video_is_one_line_error(tmp_path, capsys):
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    assert main(["faces", str(bad), "--frames", "2"]) == 2
    assert "error" in capsys.readouterr().err

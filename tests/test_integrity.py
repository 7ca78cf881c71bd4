"""Store integrity: one writer per file whatever its path, one numeric engine per store, names that are data,
damaged stores as one-line errors, progress under repeated kills, and bad inputs with their real reasons."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from features.store import FeatureStore
from features.synthetic import write_synthetic_store
from features.writer import StoreWriter, VideoResult
from tests import clips
from tests.conftest import FAST, ROOT, cli


def error_line(res) -> str:
    """The command's one error line (log lines may come before it)."""
    (line,) = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    return line


def _synthetic(path: Path, n: int = 6) -> Path:
    rng = np.random.default_rng(0)
    return write_synthetic_store(path, rng.normal(size=(n, 4, 16)).astype(np.float16), np.ones((n, 4), bool),
                                 np.arange(n) % 2, ["train", "train", "val", "val", "test", "test"][:n] * (n // 6 + 1))


# ---- 1. one writer per file -------------------------------------------------------------------------------
@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_a_linked_store_path_is_refused_while_the_first_writer_runs(sample_dataset, tmp_path, link):
    store = tmp_path / "b" / "S.h5"
    cli("features", str(sample_dataset), "--store", str(store), *FAST)
    other = tmp_path / "b" / "L.h5"
    with FeatureStore.open(store) as st:
        prov, ident = st.provenance, st.identity
        before = {r.video_id: r.row for r in st.records()}
    more = tmp_path / "more"
    (more / "real").mkdir(parents=True)
    (more / "fake").mkdir()
    for i, clip in enumerate(sorted(sample_dataset.glob("*/*.mp4"))[:2]):
        shutil.copy(clip, more / ("real" if i else "fake") / f"extra{i}.mp4")
    extra = VideoResult("late.mp4", "/x/late.mp4", 0, "train", "late", "", 3, "decoding failed: test")
    with StoreWriter(store, prov, ident, [extra]) as first:    # the first writer is running
        (os.symlink if link == "symlink" else os.link)(store.name if link == "symlink" else store, other)
        res = cli("features", str(more), "--store", str(other), *FAST, check=False)
        assert res.returncode == 2 and error_line(res).count("another process") == 1, res.stderr
        first.commit([extra])                                       # the first writer goes on writing
    with FeatureStore.open(store) as st:
        rows = {r.video_id: r.row for r in st.records()}
    assert {k: rows[k] for k in before} == before and "late.mp4" in rows and len(rows) == len(before) + 1
    if link == "symlink":
        assert other.is_symlink()                                   # the link was never replaced by a file


def test_a_symlinked_store_grows_in_place_and_keeps_the_link(tmp_path):
    real = _synthetic(tmp_path / "real.h5")
    link = tmp_path / "link.h5"
    link.symlink_to(real.name)
    with FeatureStore.open(real) as st:
        prov, ident = st.provenance, st.identity
    entries = [VideoResult(f"new{i}", "/x", 0, "train", f"n{i}", "", 3, "x") for i in range(20)]
    with StoreWriter(link, prov, ident, entries) as w:               # 20 more videos: the store must grow
        w.commit(entries)
    assert link.is_symlink() and not (tmp_path / "link.h5.lock").exists()
    with FeatureStore.open(link) as st:
        assert len(st.records()) == 26 and st.capacity >= 26


# ---- 2. one numeric engine per store ----------------------------------------------------------------------
def test_a_resume_with_another_precision_is_refused_in_one_line(sample_dataset, tmp_path):
    store = tmp_path / "s.h5"
    cli("features", str(sample_dataset), "--store", str(store), *FAST)          # FAST forces fp32
    res = cli("features", str(sample_dataset), "--store", str(store), *FAST, "--precision", "bf16", check=False)
    assert res.returncode == 2
    line = error_line(res)
    assert "backbone_numerics.precision: 'fp32' != 'bf16'" in line and "--new" in line
    prov = json.loads(cli("inspect", str(store), "--json").stdout)["provenance"]
    assert prov["backbone_numerics"] == {"precision": "fp32", "channels_last": True, "compile": False}


def test_auto_precision_comes_from_the_capability_the_same_way_under_load(monkeypatch, tmp_path):
    import torch

    from stages import backbone
    cpu = torch.device("cpu")
    monkeypatch.setattr(backbone, "cpu_flags", lambda: {"avx2", "fma"})
    assert backbone.capability_precision(cpu)[0] == "fp32"
    monkeypatch.setattr(backbone, "cpu_flags", lambda: {"avx2", "avx512f", "avx512_bf16"})
    assert backbone.capability_precision(cpu)[0] == "bf16"
    stop = threading.Event()

    def burn():
        while not stop.is_set():
            sum(i * i for i in range(10_000))
    burners = [threading.Thread(target=burn) for _ in range(4)]
    for b in burners:
        b.start()
    try:
        choices = {backbone.Embedder("random", "cpu", "auto", 8, 32).precision for _ in range(2)}
    finally:
        stop.set()
        for b in burners:
            b.join()
    assert choices == {"bf16"}                                       # no timing involved: load cannot move it
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    probed = backbone.Embedder("random", "cpu", "probe", 8, 32)
    assert probed.choice["rule"] == "probe (timed now, cached)" and Path(probed.choice["cache"]).is_file()
    again = backbone.Embedder("random", "cpu", "probe", 8, 32)
    assert again.choice["rule"] == "probe (cached)" and again.precision == probed.precision


# ---- 3. names are data ------------------------------------------------------------------------------------
# Paths, so that "[/" can be in them: "tag[/bold]y.mp4" is a folder "tag[" holding "bold]y.mp4".
MARKUP_NAMES = ["[bold red]x.mp4", "tag[/bold]y.mp4", "a [/] b.mp4", "[link=https:x]y[/link].mp4"]

TINY = """
epochs = 2
patience = 2
threads = 1
[[members]]
name = "gru"
head = "gru"
options = { hidden = 8 }
[[members]]
name = "meanpool"
head = "meanpool"
"""


def test_markup_like_names_go_through_every_command_as_they_are(sample_dataset, tmp_path):
    data = tmp_path / "data"
    clips_ = sorted(sample_dataset.glob("*/*.mp4"))
    for i, clip in enumerate(clips_):
        label = clip.parent.name
        name = MARKUP_NAMES[i % len(MARKUP_NAMES)].replace(".mp4", f"{i}.mp4")
        (data / label / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(clip, data / label / name)
    clips.text_file(data / "fake" / "[red]broken.mp4")          # its failure reason names it too
    store, run = tmp_path / "[s].h5", tmp_path / "[run]"
    res = cli("features", str(data), "--store", str(store), "--dataset", "folder", *FAST)
    assert "[red]broken.mp4" in res.stdout + res.stderr or "failed" in res.stdout
    table = cli("inspect", str(store)).stdout
    assert "[red]broken.mp4" in table                          # shown, not swallowed as markup
    out = json.loads(cli("inspect", str(store), "--json").stdout)
    assert out["failed"][0]["video_id"] == "fake/[red]broken.mp4"
    (tmp_path / "tiny.toml").write_text(TINY)
    cli("train-ensemble", "--store", str(store), "--run", str(run), "--config", str(tmp_path / "tiny.toml"))
    report = cli("report", str(run), "--bootstrap", "100")
    assert "[run]" in report.stdout
    one = data / "real" / "tag[" / next(p.name for p in (data / "real" / "tag[").iterdir())
    table = cli("predict", str(data / "real"), str(data / "fake"), "--run", str(run), check=False)
    for path in (data / "real").rglob("*.mp4"):
        assert path.relative_to(data / "real").as_posix() in table.stdout, path
    assert "[red]broken.mp4" in table.stderr
    assert "[/" in str(one)
    js = json.loads(cli("predict", str(one), "--run", str(run), "--json").stdout)
    assert js["videos"][0]["video_id"] == one.name and js["videos"][0]["path"] == str(one)
    csv_out = cli("predict", str(one), "--run", str(run), "--csv").stdout
    assert one.name in csv_out
    faces = cli("faces", str(one), "--frames", "2")
    assert one.name in faces.stdout.replace("\n", "")


# ---- 4. damaged stores ------------------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["status", "identity", "dataset"])
def test_a_store_with_bad_values_is_a_one_line_not_a_valid_store(tmp_path, damage):
    store = _synthetic(tmp_path / "s.h5")
    with h5py.File(store, "r+", locking=False) as f:
        if damage == "status":
            f["status"][0] = 7
        elif damage == "identity":
            f.attrs["identity"] = "{not json"
        else:
            del f["probs"]
    for args in (["inspect", str(store)], ["train-ensemble", "--store", str(store), "--run", str(tmp_path / "r")]):
        res = cli(*args, check=False)
        assert res.returncode == 2, res.stderr
        assert "not a valid store" in error_line(res) and "Traceback" not in res.stderr
    truncated = tmp_path / "t.h5"
    truncated.write_bytes(store.read_bytes()[:4000])
    res = cli("inspect", str(truncated), check=False)
    assert res.returncode == 2 and "not a valid store" in res.stderr


# ---- 5. progress under repeated kills ---------------------------------------------------------------------
def test_a_run_killed_every_3_seconds_still_finishes_videos(tmp_path):
    from pipeline.sample import SampleConfig, run
    data = run(SampleConfig(out=str(tmp_path / "slow"), videos=10, seed=3, frames=48, width=480, height=360))
    store = tmp_path / "k.h5"
    args = [sys.executable, "-m", "pipeline", "features", str(data), "--store", str(store),
            "--frames", "8", "--crop", "112", "--weights", "random", "--precision", "fp32"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done_after, kills, log = [], 0, []
    for _ in range(30):
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)
        started = threading.Event()

        def watch(stream=proc.stderr, started=started):
            for text in stream:                                     # start-up ends when extraction begins
                log.append(text)
                if "extracting" in text:
                    started.set()
        threading.Thread(target=watch, daemon=True).start()
        started.wait(timeout=120)
        try:
            proc.wait(timeout=3.0)                                  # then 3 s of work, and a SIGKILL
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
        with FeatureStore.open(store) as st:
            done_after.append(len(st.videos()))
        if proc.returncode == 0:
            break
    assert proc.returncode == 0 and done_after[-1] == 10, (done_after, "".join(log)[-2000:])
    assert kills >= 1, "the run never needed a kill: make the videos slower"
    # Before, a commit held a whole backbone batch, and 33 kills in a row kept nothing. Now videos are
    # committed as they finish: most lives keep some (a life spent warming up on a busy machine may not).
    gains = [b - a for a, b in zip([0, *done_after], done_after)]
    assert sum(g > 0 for g in gains) >= len(gains) / 2, done_after


# ---- 6. bad inputs with their real reasons ----------------------------------------------------------------
def test_fifo_dangling_link_damaged_and_truncated_files_have_their_reasons(sample_dataset, tmp_path):
    folder = tmp_path / "odd"
    (folder / "real").mkdir(parents=True)
    (folder / "fake").mkdir()
    good = sorted(sample_dataset.glob("real/*.mp4"))[0]
    shutil.copy(good, folder / "real" / "good.mp4")
    os.mkfifo(folder / "real" / "pipe.mp4")
    (folder / "real" / "gone.mp4").symlink_to(tmp_path / "nowhere.mp4")
    data = good.read_bytes()
    moov = data.find(b"moov")
    garbled = bytearray(data)
    garbled[moov + 60:moov + 400] = bytes((k * 37) & 0xFF for k in range(340))
    (folder / "fake" / "garbled.mp4").write_bytes(bytes(garbled))
    (folder / "fake" / "cut.mp4").write_bytes(data[:len(data) // 3])
    res = cli("features", str(folder), "--store", str(tmp_path / "s.h5"), "--dataset", "folder", *FAST, "--json")
    failed = json.loads(res.stdout)["failed"]
    reasons = {r.video_id: r.reason for r in FeatureStore.open(tmp_path / "s.h5").videos(status="failed")}
    assert reasons["real/pipe.mp4"] == "not a regular file (a FIFO)"
    assert reasons["real/gone.mp4"] == "broken symbolic link"
    assert "audio" not in reasons["fake/garbled.mp4"] and "damaged" in reasons["fake/garbled.mp4"]
    assert reasons["fake/cut.mp4"].startswith("truncated file") and "Invalid data" not in reasons["fake/cut.mp4"]
    assert sum(failed.values()) == 4


def test_ffmpeg_dies_with_its_parent(tmp_path):
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    video = clips.write_frames(tmp_path / "long.mp4", np.random.default_rng(0).integers(
        0, 255, (600, 240, 320, 3), dtype=np.uint8), fps=25)
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from stages.decode import sample_frames\n"
            "while True: sample_frames(%r, 300)\n") % (str(ROOT), str(video))
    parent = subprocess.Popen([sys.executable, "-c", code])
    try:
        child = None
        for _ in range(200):
            kids = Path(f"/proc/{parent.pid}/task/{parent.pid}/children").read_text().split()
            if kids:
                child = int(kids[0])
                break
            time.sleep(0.05)
        assert child is not None
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    t0 = time.monotonic()
    while Path(f"/proc/{child}").exists() and time.monotonic() - t0 < 5:
        status = Path(f"/proc/{child}/status").read_text() if Path(f"/proc/{child}/status").exists() else ""
        if "zombie" in status:
            break
        time.sleep(0.02)
    assert time.monotonic() - t0 < 0.5, "ffmpeg outlived its parent"

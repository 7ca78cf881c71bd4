"""Stage two on synthetic stores: temporal heads use time, runs resume, checkpoints and stores are checked."""
from __future__ import annotations

import csv
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ensembles.checkpoint import CheckpointError, load_checkpoint
from ensembles.compare import auc
from ensembles.ensemble import MemberSpec
from ensembles.run_folder import load_run, store_differences
from features.store import FeatureStore
from features.synthetic import write_synthetic_store
from pipeline.cli import main as cli
from pipeline.core.config import ConfigError
from pipeline.core.errors import PipelineError
from pipeline.report.load import load_run as report_load_run
from stages import train_ensemble

REPO = Path(__file__).resolve().parents[1]
RECURRENT = {"lstm": "lstm", "gru": "gru", "bilstm": "bilstm-attn", "bigru": "bigru-attn"}


def planted(n_pairs: int, t: int = 8, d: int = 4, seed: int = 0):
    """A signal that lives only in the order of frames.

    Each pair of videos shares one set of T frame vectors: the fake shows them sorted along feature 0 (a
    ramp), the real in a random order. So the multiset of frames is *identical* within each pair, and any
    order-blind model scores both alike. A quarter of the pairs also miss two frames (masked, filled with
    junk) in both videos, so masks are exercised during training too. Pairs share a group and a split.
    """
    rng = np.random.default_rng(seed)
    split_of = ["train"] * 6 + ["val"] * 2 + ["test"] * 2
    x, mask, labels, splits, groups = [], [], [], [], []
    for k in range(n_pairs):
        frames = rng.normal(size=(t, d))
        valid = np.ones(t, bool)
        if k % 4 == 3:
            valid[rng.choice(t, 2, replace=False)] = False
        kept = frames[valid]
        for label, order in ((0, rng.permutation(len(kept))), (1, np.argsort(kept[:, 0]))):
            video = np.full((t, d), 50.0)          # junk in the masked slots
            video[valid] = kept[order]
            x.append(video)
            mask.append(valid)
            labels.append(label)
            splits.append(split_of[k % len(split_of)])
            groups.append(f"pair{k:04d}")
    return np.array(x), np.array(mask), np.array(labels), np.array(splits), groups


def members_toml(path: Path, train: dict, members: list[tuple[str, str, dict, int]]) -> Path:
    lines = ["[train]", *(f"{k} = {json.dumps(v)}" for k, v in train.items())]
    for name, head, options, seed in members:
        opts = ", ".join(f"{k} = {json.dumps(v)}" for k, v in options.items())
        lines += ["", "[[members]]", f'name = "{name}"', f'head = "{head}"', f"seed = {seed}", f"options = {{ {opts} }}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def history(run: Path, member: str) -> list[dict]:
    with (run / "members" / member / "history.csv").open() as fh:
        return list(csv.DictReader(fh))


def predictions(run: Path) -> list[dict]:
    with (run / "predictions.csv").open() as fh:
        return list(csv.DictReader(fh))


TINY_TRAIN = {"epochs": 4, "lr": 3e-3, "batch_size": 16, "checkpoint_interval": 0, "threads": 1}
TINY_MEMBERS = [("a", "gru", {"hidden": 8}, 0), ("b", "lstm", {"hidden": 8}, 1)]


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory):
    """Every head on a planted temporal signal (a few seconds with one thread)."""
    root = tmp_path_factory.mktemp("planted")
    x, m, y, s, g = planted(160)
    store = write_synthetic_store(root / "store.h5", x, m, y, s, groups=g)
    sizes = {"hidden": 32}
    attn = {"hidden": 32, "fc": 32, "attn_dim": 16}
    config = members_toml(root / "members.toml", {"epochs": 40, "lr": 3e-3, "patience": 8, "threads": 1},
                          [("lstm", "lstm", sizes, 0), ("gru", "gru", sizes, 1), ("bilstm", "bilstm-attn", attn, 2),
                           ("bigru", "bigru-attn", attn, 3), ("meanpool", "meanpool", {}, 4)])
    run = root / "run"
    assert cli(["train-ensemble", "--store", str(store), "--run", str(run), "--config", str(config)]) == 0
    return store, run


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A small planted store, its config, and one finished two-member run on it."""
    root = tmp_path_factory.mktemp("tiny")
    x, m, y, s, g = planted(24)
    store = write_synthetic_store(root / "store.h5", x, m, y, s, groups=g)
    config = members_toml(root / "members.toml", TINY_TRAIN, TINY_MEMBERS)
    run = root / "run"
    assert cli(["train-ensemble", "--store", str(store), "--run", str(run), "--config", str(config)]) == 0
    return {"store": store, "config": config, "run": run, "arrays": (x, m, y, s, g)}


def test_recurrent_heads_use_time_and_meanpool_cannot(planted_run):
    _, run = planted_run
    val = report_load_run(run).splits["val"]
    scores = {model: auc(val.labels, val.prob(model)) for model in val.models}
    for member in RECURRENT:
        assert scores[member] >= 0.95, scores
    assert abs(scores["meanpool"] - 0.5) < 0.05, scores
    # Order-blind by construction: both videos of a pair (same frames) get the same score.
    pairs = {}
    for vid, group, p in zip(val.video_ids, val.groups, val.prob("meanpool")):
        pairs.setdefault(group, []).append(p)
    assert all(abs(a - b) < 1e-6 for a, b in pairs.values())


def test_run_folder_has_the_pinned_layout(planted_run):
    store, run = planted_run
    info = json.loads((run / "run.json").read_text())
    assert {"store", "members", "train_config", "threshold", "created", "versions", "command"} <= set(info)
    assert info["store"]["weights_sha256"] == "0" * 64 and info["status"] == "complete"
    assert [m["name"] for m in info["members"]] == ["lstm", "gru", "bilstm", "bigru", "meanpool"]
    assert 0.0 < info["threshold"] < 1.0 and info["threshold_method"].startswith("Youden")
    for m in info["members"]:
        folder = run / "members" / m["name"]
        assert {"best.pt", "last.pt", "history.csv", "config.json"} <= {p.name for p in folder.iterdir()}
        rows = history(run, m["name"])
        assert list(rows[0]) == ["epoch", "train_loss", "train_auc", "train_acc", "val_loss", "val_auc", "val_acc", "lr"]
        assert [int(r["epoch"]) for r in rows] == list(range(1, len(rows) + 1))
        best = load_checkpoint(folder / "best.pt")
        assert best["store"]["path"] == str(Path(store).resolve()) and best["train_config"]["lr"] == 3e-3
        assert "optimizer" in load_checkpoint(folder / "last.pt")
    rows = predictions(run)
    with FeatureStore.open(store) as st:
        n_eval = len(st.videos(split=("val", "test")))
    assert len(rows) == n_eval * 6 and {r["model"] for r in rows} == {"ensemble", *(m["name"] for m in info["members"])}
    attention = (run / "attention.csv").read_text().splitlines()
    assert attention[0] == "video_id,model,frame,weight" and len(attention) == 1 + n_eval * 8 * 2


def test_load_run_predicts_what_training_wrote_from_raw_store_features(planted_run):
    store, run = planted_run
    ensemble = load_run(run)
    with FeatureStore.open(store) as st:
        ids = [r.video_id for r in st.videos(split="test")]
        x, m = st.load(ids)
        assert store_differences(ensemble.info, st.identity) == []
    probs = ensemble.predict(x.astype(np.float32), m)
    saved = {(r["model"], r["video_id"]): float(r["prob_fake"]) for r in predictions(run) if r["split"] == "test"}
    for model, p in probs.items():
        assert np.allclose(p, [saved[(model, v)] for v in ids], atol=1e-6), model
    weights = ensemble.attention(x, m)["bilstm"]
    assert weights.shape == m.shape and np.allclose(weights.sum(1), 1, atol=1e-5)


def test_same_seed_gives_the_same_history_in_memory_or_streamed(tiny, tmp_path):
    again, streamed = tmp_path / "again", tmp_path / "streamed"
    base = ["--store", str(tiny["store"]), "--config", str(tiny["config"])]
    assert cli(["train-ensemble", *base, "--run", str(again)]) == 0
    assert cli(["train-ensemble", *base, "--run", str(streamed), "--max-memory-gb", "0"]) == 0
    assert json.loads((streamed / "run.json").read_text())["data"]["in_memory"] is False
    for member in ("a", "b"):
        assert history(again, member) == history(tiny["run"], member) == history(streamed, member)
    other = members_toml(tmp_path / "seed.toml", TINY_TRAIN, [("b", "lstm", {"hidden": 8}, 7)])
    assert cli(["train-ensemble", "--store", str(tiny["store"]), "--config", str(other), "--run", str(tmp_path / "o")]) == 0
    assert history(tmp_path / "o", "b") != history(tiny["run"], "b")


def test_killed_training_resumes_from_its_last_checkpoint(tiny, tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "pipeline", "train-ensemble", "--store", str(tiny["store"]), "--run", str(run),
           "--config", str(tiny["config"])]
    killed = subprocess.run(cmd, cwd=REPO, env={**os.environ, "PIPELINE_TEST_KILL_TRAIN": "b:2"},
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert load_checkpoint(run / "members" / "b" / "last.pt")["epoch"] == 2
    assert not (run / "predictions.csv").exists()
    finished_a = (run / "members" / "a" / "best.pt").stat().st_mtime_ns
    with pytest.raises(PipelineError, match="--resume"):
        train_ensemble.run(tiny["store"], run, {})
    with pytest.raises(ConfigError, match="lr"):
        train_ensemble.run(tiny["store"], run, {"lr": 0.5}, resume=True)
    assert cli(["train-ensemble", "--store", str(tiny["store"]), "--run", str(run), "--resume"]) == 0
    assert (run / "members" / "a" / "best.pt").stat().st_mtime_ns == finished_a   # not retrained
    assert history(run, "b") == history(tiny["run"], "b")                        # as if never killed
    assert predictions(run) == predictions(tiny["run"])


def test_a_checkpoint_holding_a_pickled_object_is_refused(tiny, tmp_path):
    marker = tmp_path / "code-ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    best = tiny["run"] / "members" / "a" / "best.pt"
    good = best.read_bytes()
    try:
        torch.save({"format": "deepfake-ensemble/member-checkpoint", "version": 1, "model": Payload()}, best)
        with pytest.raises(CheckpointError, match="pickled Python object.*posix.system"):
            load_run(tiny["run"])
    finally:
        best.write_bytes(good)
    assert not marker.exists()
    load_run(tiny["run"])


def test_a_store_with_another_provenance_or_other_videos_is_refused(tiny, tmp_path):
    x, m, y, s, g = tiny["arrays"]
    other = write_synthetic_store(tmp_path / "other.h5", x, m, y, s, groups=g,
                                  provenance_overrides={"weights_sha256": "f" * 64})
    spec = MemberSpec("meanpool", "meanpool")
    with pytest.raises(PipelineError, match="weights_sha256"):
        train_ensemble.add_head(other, tiny["run"], spec, {})
    with pytest.raises(PipelineError, match="weights_sha256"):
        train_ensemble.run(other, tiny["run"], {}, resume=True)
    relabelled = write_synthetic_store(tmp_path / "relabelled.h5", x, m, 1 - y, s, groups=g)
    with pytest.raises(PipelineError, match="videos, labels or splits"):
        train_ensemble.add_head(relabelled, tiny["run"], spec, {})


def test_train_head_adds_a_member_to_the_run(tiny, tmp_path):
    run = tmp_path / "run"
    base = ["--store", str(tiny["store"]), "--run", str(run)]
    assert cli(["train-ensemble", *base, "--config", str(tiny["config"])]) == 0
    before = [r for r in predictions(run) if r["model"] == "ensemble"]
    assert cli(["train-head", "meanpool", *base, "--option", "dropout=0.1", "--seed", "3"]) == 0
    info = json.loads((run / "run.json").read_text())
    added = info["members"][-1]
    assert (added["name"], added["options"], added["seed"], added["in_ensemble"]) == ("meanpool", {"dropout": 0.1}, 3, False)
    rows = predictions(run)
    assert [r for r in rows if r["model"] == "ensemble"] == before          # compared, not averaged in
    assert {r["video_id"] for r in rows if r["model"] == "meanpool"} == {r["video_id"] for r in before}
    assert "meanpool" in report_load_run(run).splits["test"].models
    assert cli(["train-head", "meanpool", *base]) == 2                          # name taken: a one-line error
    assert cli(["train-head", "no-such-head", *base]) == 2


def test_videos_without_a_face_are_scored_half_and_flagged(tmp_path):
    x, m, y, s, g = planted(24)
    empty = [i for i in range(len(s)) if s[i] in ("val", "test")][:3] + [0]
    m[empty] = False
    store = write_synthetic_store(tmp_path / "s.h5", x, m, y, s, groups=g)
    config = members_toml(tmp_path / "c.toml", TINY_TRAIN, TINY_MEMBERS[:1])
    assert cli(["train-ensemble", "--store", str(store), "--run", str(tmp_path / "run"), "--config", str(config)]) == 0
    with FeatureStore.open(store) as st:
        no_face = {st.records()[i].video_id for i in empty[:3]}
    rows = predictions(tmp_path / "run")
    flagged = {r["video_id"] for r in rows if r["no_face"] == "1"}
    assert flagged == no_face
    assert all(r["prob_fake"] == "0.5" for r in rows if r["video_id"] in no_face)


def test_without_a_validation_split_training_falls_back_and_warns(tmp_path, caplog):
    x, m, y, s, g = planted(24)
    s = np.where(s == "val", "train", s)
    store = write_synthetic_store(tmp_path / "s.h5", x, m, y, s, groups=g)
    config = members_toml(tmp_path / "c.toml", TINY_TRAIN, TINY_MEMBERS[:1])
    with caplog.at_level(logging.WARNING):
        assert cli(["train-ensemble", "--store", str(store), "--run", str(tmp_path / "run"), "--config", str(config)]) == 0
    assert "no validation videos" in caplog.text
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["threshold"] == 0.5 and info["members"][0]["monitor"] == "train_loss"
    assert all(r["val_auc"] == "" and r["train_loss"] != "" for r in history(tmp_path / "run", "a"))
    assert {r["split"] for r in predictions(tmp_path / "run")} == {"test"}


def test_a_training_split_with_one_class_is_a_clear_error(tmp_path):
    x, m, y, s, g = planted(12)
    y = np.where(s == "train", 1, y)
    store = write_synthetic_store(tmp_path / "s.h5", x, m, y, s, groups=g)
    with pytest.raises(PipelineError, match="only fake videos"):
        train_ensemble.run(store, tmp_path / "run", {"threads": 1})

"""The run folder module: one decision rule for every model, one ensemble mean, files that round-trip."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ensembles.decision import choose_threshold
from ensembles.ensemble import ENSEMBLE, ensemble_mean
from ensembles.run_folder import RunError, RunFolder, Row
from pipeline import cli


def _rows(name, split, probs, labels, no_face):
    return [Row(f"{split}/v{i:02d}.mp4", split, int(labels[i]), f"g{i}", name, float(probs[i]), bool(no_face[i]))
            for i in range(len(probs))]


def make_run(tmp_path, members: dict[str, dict[str, np.ndarray]], labels, no_face):
    """A finished run folder with ``members`` = {name: {split: probs}} (no weights: report-level only)."""
    folder = RunFolder(tmp_path / "run")
    info = {"store": {"path": "s.h5", "random_weights": True, "frames": 4, "crop": 64},
            "members": [{"name": n, "head": "gru", "seed": i} for i, n in enumerate(members)],
            "train_config": {}, "status": "training"}
    for name, by_split in members.items():
        folder.member_dir(name).mkdir(parents=True)
        folder.write_history(name, [{"epoch": 1, "train_loss": 0.7, "val_loss": 0.6}])
        rows = [r for split, p in by_split.items() for r in _rows(name, split, p, labels[split], no_face[split])]
        folder.write_member_outputs(name, rows)
    folder.assemble(info)
    info["status"] = "complete"
    folder.write(info)
    return folder, info


def test_threshold_rule_youden_midpoint_no_face_excluded():
    labels = np.array([0, 0, 1, 1, 0, 1])
    probs = np.array([0.1, 0.3, 0.7, 0.9, 0.5, 0.5])
    no_face = np.array([False, False, False, False, True, True])   # scored 0.5: no evidence either way
    t, how = choose_threshold(labels, probs, no_face)
    assert t == pytest.approx(0.5) and "Youden" in how            # halfway between 0.3 and 0.7
    t_all, _ = choose_threshold(labels, probs)                     # counting them would move it
    assert t_all != t
    assert choose_threshold([1, 1], [0.2, 0.9])[0] == 0.5          # one class: 0.5, said so
    assert choose_threshold([0, 1], [0.9, 0.1])[0] == 0.5          # no point beats chance


def test_the_ensemble_and_a_member_get_the_same_threshold_from_the_same_scores(tmp_path):
    rng = np.random.default_rng(0)
    labels = {s: np.arange(20) % 2 for s in ("val", "test")}
    no_face = {s: np.isin(np.arange(20), [3, 8]) for s in ("val", "test")}
    scores = {s: np.where(no_face[s], 0.5, np.clip(0.3 + 0.4 * labels[s] + rng.normal(0, 0.2, 20), 0, 1))
              for s in ("val", "test")}
    # two identical members: the ensemble's scores are theirs, so every threshold must be the same
    expected, _ = choose_threshold(labels["val"], scores["val"], no_face["val"])
    folder2, info2 = make_run(tmp_path, {"a": scores, "b": scores}, labels, no_face)
    th2 = info2["thresholds"]
    assert th2["a"]["value"] == th2["b"]["value"] == th2[ENSEMBLE]["value"] == pytest.approx(expected)
    assert th2[ENSEMBLE]["method"] == th2["a"]["method"]
    assert info2["threshold"] == th2[ENSEMBLE]["value"]           # what predict uses
    # the report applies the run's thresholds, the same for the ensemble and the member
    assert cli.main(["report", str(folder2.path), "--bootstrap", "100"]) == 0
    metrics = json.loads((folder2.path / "metrics.json").read_text())
    used = {m: rec["thresholds"]["val"] for m, rec in metrics["models"].items()}
    assert used["a"] == used[ENSEMBLE] == pytest.approx(expected)
    assert metrics["models"]["a"]["metrics"]["accuracy@val"] == metrics["models"][ENSEMBLE]["metrics"]["accuracy@val"]


def test_ensemble_rows_are_the_mean_of_full_precision_member_rows(tmp_path):
    rng = np.random.default_rng(1)
    labels = {s: np.arange(10) % 2 for s in ("val", "test")}
    no_face = {s: np.zeros(10, bool) for s in ("val", "test")}
    members = {n: {s: rng.random(10) for s in ("val", "test")} for n in ("a", "b", "c")}
    folder, _ = make_run(tmp_path, members, labels, no_face)
    splits = folder.read_predictions([ENSEMBLE, "a", "b", "c"])
    for s in ("val", "test"):
        d = splits[s]
        assert np.array_equal(d.prob("a"), members["a"][s])       # 17 digits: the float64 comes back exactly
        want = ensemble_mean({n: members[n][s] for n in members}, ["a", "b", "c"])
        assert np.array_equal(d.prob(ENSEMBLE), want)             # bit for bit: one mean, one formula


def test_bad_run_folders_are_one_line_errors(tmp_path):
    with pytest.raises(RunError, match="no run.json"):
        RunFolder(tmp_path).read()
    (tmp_path / "run.json").write_text("{not json")
    with pytest.raises(RunError, match="not valid JSON"):
        RunFolder(tmp_path).read()
    (tmp_path / "run.json").write_text(json.dumps({"store": {}, "status": "training"}))
    with pytest.raises(RunError, match="has not finished"):
        RunFolder(tmp_path).read(complete=True)

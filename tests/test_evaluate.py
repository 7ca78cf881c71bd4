"""`evaluate` on generated data: another dataset's store and a perturbed copy of the training store, scored
by one path (the same numbers as `predict` and as the run's own predictions), stores made another way
refused, and the report that covers every set (matrix, robustness, frame level, runs compared)."""
from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

from ensembles.run_folder import RunFolder
from tests.browser import CHROMIUM, positions
from tests.conftest import cli

MODELS = {"ensemble", "lstm", "bigru-attn", "meanpool"}


def _scores(path) -> dict[tuple[str, str], float]:
    return {(r["video_id"], r["model"]): float(r["prob_fake"]) for r in csv.DictReader(path.open())}


@pytest.fixture(scope="module")
def evaluated(trained_run, second_store, perturbed_store, tmp_path_factory) -> dict:
    """A copy of the trained run, evaluated on its own store (test split), another dataset and a perturbed copy."""
    from pipeline.evaluate import EvaluateConfig, run
    base = tmp_path_factory.mktemp("evaluated")
    run_dir = base / "run"
    shutil.copytree(trained_run["run"], run_dir)
    metas = {
        "own": run(EvaluateConfig(run=str(run_dir), store=str(trained_run["store"]), name="own", split="test")),
        "seed1": run(EvaluateConfig(run=str(run_dir), store=str(second_store["store"]), name="seed1")),
        "jpeg3": run(EvaluateConfig(run=str(run_dir), store=str(perturbed_store), name="jpeg3")),
    }
    return {"run": run_dir, "meta": metas, **{k: trained_run[k] for k in ("store", "data")},
            "second": second_store, "perturbed": perturbed_store}


@pytest.fixture(scope="module")
def reported(evaluated) -> dict:
    # COLUMNS=80 as many CI runners set it: output that is not a terminal must still not be cut at 80
    res = cli("report", str(evaluated["run"]), "--bootstrap", "200", env={"COLUMNS": "80"})
    return {**evaluated, "stdout": res.stdout,
            "metrics": json.loads((evaluated["run"] / "metrics.json").read_text())}


def test_evaluate_scores_every_video_of_another_store(evaluated):
    folder = RunFolder(evaluated["run"])
    assert folder.evaluations() == ["jpeg3", "own", "seed1"]
    meta = evaluated["meta"]["seed1"]
    assert (meta["split"], meta["own_dataset"], meta["perturb"]) == ("all", False, "")
    assert meta["videos"]["scored"] == 8 and meta["videos"]["fake"] == 4
    scores = _scores(folder.evaluation_dir("seed1") / "predictions.csv")
    assert {m for _, m in scores} == MODELS and len(scores) == 8 * len(MODELS)
    from features.store import FeatureStore
    with FeatureStore.open(evaluated["second"]["store"]) as st:
        ids = sorted(r.video_id for r in st.videos())
        _, mask = st.load(ids)
    frames = list(csv.DictReader((folder.evaluation_dir("seed1") / "frames.csv").open()))
    assert {r["model"] for r in frames} == {"meanpool"} and len(frames) == int(mask.sum())   # one per face
    assert meta["frame_models"] == ["meanpool"]


def test_one_scoring_path_evaluate_equals_the_runs_own_test_predictions(evaluated):
    """On the run's own store, evaluate gives the run's stored test predictions, per video and per frame."""
    folder = RunFolder(evaluated["run"])
    own = evaluated["meta"]["own"]
    assert (own["split"], own["own_dataset"], own["splits"]) == ("test", True, ["test"])
    stored = {k: v for k, v in _scores(folder.predictions).items()
              if k[0] in {r["video_id"] for r in csv.DictReader(folder.predictions.open()) if r["split"] == "test"}}
    got = _scores(folder.evaluation_dir("own") / "predictions.csv")
    assert got.keys() == stored.keys() and len(got) >= 2 * len(MODELS)
    for key, p in stored.items():
        assert got[key] == pytest.approx(p, abs=1e-6), key        # float32 heads, batches may be grouped otherwise
    frame_key = lambda r: (r["video_id"], r["model"], r["frame"])   # noqa: E731
    run_frames = {frame_key(r): float(r["prob_fake"]) for r in folder.read_frames() if r["split"] == "test"}
    eval_frames = {frame_key(r): float(r["prob_fake"]) for r in folder.evaluation_frames("own")}
    assert eval_frames.keys() == run_frames.keys() and eval_frames
    assert all(eval_frames[k] == pytest.approx(v, abs=1e-6) for k, v in run_frames.items())


def test_one_scoring_path_evaluate_equals_predict_on_the_same_videos(evaluated):
    """predict decodes the other dataset's videos afresh; its scores are evaluate's on that dataset's store."""
    out = json.loads(cli("predict", str(evaluated["second"]["data"]), "--run", str(evaluated["run"]), "--json").stdout)
    predicted = {v["video_id"]: v for v in out["videos"]}
    scores = _scores(RunFolder(evaluated["run"]).evaluation_dir("seed1") / "predictions.csv")
    assert {vid for vid, _ in scores} == set(predicted)
    for (vid, model), p in scores.items():
        got = predicted[vid]["prob_fake"] if model == "ensemble" else predicted[vid]["members"][model]
        assert got == pytest.approx(p, abs=1e-6), (vid, model)


def test_meanpool_frame_scores_average_to_its_video_score(evaluated):
    """A linear head: the mean of a video's frame logits is its video logit, so frames.csv is the model's own."""
    folder = RunFolder(evaluated["run"])
    video = _scores(folder.evaluation_dir("seed1") / "predictions.csv")
    by_video: dict[str, list[float]] = {}
    for r in folder.evaluation_frames("seed1"):
        by_video.setdefault(r["video_id"], []).append(float(r["prob_fake"]))
    for vid, probs in by_video.items():
        logit = np.mean([np.log(p / (1 - p)) for p in probs])
        assert 1 / (1 + np.exp(-logit)) == pytest.approx(video[(vid, "meanpool")], abs=1e-5), vid


def test_a_perturbed_copy_is_accepted_and_says_what_it_is(evaluated):
    meta = evaluated["meta"]["jpeg3"]
    assert meta["perturb"] == "jpeg:3" and meta["perturbation"]["value"] == 15
    assert meta["own_dataset"] and meta["split"] == "test"             # the training videos are left out
    assert meta["videos"]["scored"] == evaluated["meta"]["own"]["videos"]["scored"]


def test_a_store_made_another_way_is_refused_in_one_line(evaluated, tmp_path):
    from features.synthetic import write_synthetic_store
    other = tmp_path / "other.h5"
    rng = np.random.default_rng(0)
    write_synthetic_store(other, rng.normal(size=(4, 4, 2048)), np.ones((4, 4), bool), [0, 1, 0, 1],
                          ["test"] * 4)
    res = cli("evaluate", str(evaluated["run"]), "--store", str(other), check=False)
    assert res.returncode == 2
    err = [line for line in res.stderr.strip().splitlines() if line.strip()]
    assert len(err) == 1 and "was not made like the store run" in err[0], res.stderr
    assert "backbone: 'torchvision.resnet50' != 'synthetic'" in err[0] and "only a perturbation may differ" in err[0]
    assert not RunFolder(evaluated["run"]).evaluation_dir("other").exists()
    from pipeline.evaluate import EvaluateConfig, EvaluateError, run
    with pytest.raises(EvaluateError, match="trained on its train split"):
        run(EvaluateConfig(run=str(evaluated["run"]), store=str(evaluated["store"]), split="train"))


def test_report_covers_every_set_with_the_matrix_and_the_robustness_figure(reported):
    m, run = reported["metrics"], reported["run"]
    assert set(m["sets"]) == {"own", "seed1", "jpeg3"}                 # "own" evaluation: the own split, once
    for name, rec in m["sets"].items():
        assert set(rec["models"]) == MODELS and rec["level"] == "video"
        assert rec["comparisons"] and all(c["set"] == name for c in rec["comparisons"])
        assert rec["frame_level"]["meanpool"]["level"] == "frame"
    matrix = m["cross_dataset"]
    assert matrix["columns"] == ["f test (own)", "seed1"]              # unperturbed sets only
    assert {r["model"] for r in matrix["rows"]} == MODELS
    ens = next(r for r in matrix["rows"] if r["model"] == "ensemble")
    assert ens["cells"]["seed1"]["value"] == m["sets"]["seed1"]["models"]["ensemble"]["metrics"]["roc_auc"]["value"]
    levels = {(q["model"], q["level"]) for q in m["robustness"]}
    assert levels == {(model, lv) for model in MODELS for lv in (0, 3)}
    assert all(q["curve"] == "jpeg" for q in m["robustness"])
    for png in ("roc", "matrix", "robustness", "pairwise"):
        assert (run / "report_files" / f"{png}.png").stat().st_size > 5000, png
    with (run / "comparisons.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert {r["set"] for r in rows} == {"own", "seed1", "jpeg3"} and len(rows) == 3 * 6
    md = (run / "report.md").read_text()
    for text in ("## Cross-dataset", "## Robustness", "## Evaluation sets", "frame-level AUC",
                 "evaluation set seed1: all splits of seed1.h5", "perturbed with jpeg:3"):
        assert text in md, text


def test_terminal_output_stays_whole_in_a_pipe(reported):
    """Captured output is not a terminal: tables keep whole names and sentences are never cut mid-line."""
    lines = reported["stdout"].splitlines()
    headline = [ln for ln in lines if ln.startswith("Best on test ROC AUC")]
    assert len(headline) == 1 and headline[0].rstrip().endswith(("significant.", "at 0.05."))
    header = next(ln for ln in lines if "f test (own)" in ln)
    assert "seed1" in header and header.split()[0] == "model"
    for model in MODELS:
        assert any(ln.split()[:1] == [model] for ln in lines), model
    verdicts = [ln for ln in lines if ln.startswith("  - ")]
    assert len(verdicts) == 6 and all("Wilcoxon" in ln for ln in verdicts)
    assert any(len(ln) > 80 for ln in lines)                          # laid out wider than COLUMNS


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install -y chromium)")
def test_first_screen_has_headline_table_roc_and_matrix(reported, tmp_path):
    pos = positions(reported["run"] / "report.html", ["headline", "summary", "roc", "matrix"], tmp_path)
    for element in ("headline", "summary", "roc", "matrix"):
        assert 0 <= pos[element][0] < pos[element][1] <= 1000, (element, pos)
    assert pos["_images"][0] == pos["_images"][1] >= 9


def test_compare_puts_a_second_run_beside_with_paired_tests_on_shared_sets(reported, tmp_path):
    from pipeline.evaluate import EvaluateConfig, run
    config = tmp_path / "one.toml"
    config.write_text('epochs = 3\nthreads = 1\n[[members]]\nname = "framelinear"\nhead = "framelinear"\nseed = 0\n')
    other = tmp_path / "other"
    cli("train-ensemble", "--store", str(reported["store"]), "--run", str(other), "--config", str(config))
    run(EvaluateConfig(run=str(other), store=str(reported["second"]["store"]), name="seed1"))
    res = cli("report", str(reported["run"]), "--compare", str(other), "--bootstrap", "200")
    m = json.loads((reported["run"] / "metrics.json").read_text())
    assert m["compared_runs"] == ["other"]
    shared = {r["set"] for r in m["run_comparisons"]}
    assert shared == {"own", "seed1"}                                  # other was not evaluated on jpeg3
    for r in m["run_comparisons"]:
        assert (r["model_a"], r["model_b"]) in {("run/ensemble", "other/ensemble"), ("other/ensemble", "run/ensemble")}
        assert r["n_videos"] == m["sets"][r["set"]]["n_videos"] and 0 <= r["delong_p_holm"] <= 1
    labels = {r["label"] for r in m["cross_dataset"]["rows"]}
    assert {"run/ensemble", "other/ensemble", "other/framelinear"} <= labels
    other_run = [r for r in m["cross_dataset"]["rows"] if r["run"] == "other"]
    assert all(set(r["cells"]) == {"f test (own)", "seed1"} for r in other_run)
    assert "runs, seed1:" in res.stdout
    md = (reported["run"] / "report.md").read_text()
    assert "## Runs compared" in md and "Runs: run, other" in md
    frames = list(csv.DictReader((other / "frames.csv").open()))
    assert {r["model"] for r in frames} == {"framelinear"}             # training wrote the new head's frames

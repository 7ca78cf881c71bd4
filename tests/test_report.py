"""`make report` on a synthetic run folder laid out as pinned in notes/interfaces.md ("Training run folder")."""
from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as skm

from pipeline import cli
from ensembles import run_folder
from pipeline.report import ReportConfig, load, metrics, run

MEMBERS = [("gru_s0", "gru", 0), ("gru_s1", "gru", 1), ("lstm_s0", "lstm", 0), ("lstm_s1", "lstm", 1),
           ("meanpool", "meanpool", 0)]
STRENGTH = {"gru_s0": 2.2, "gru_s1": 2.0, "lstm_s0": 1.4, "lstm_s1": 1.3, "meanpool": 0.6}


def store_provenance(path: Path, random_weights: bool = True) -> dict:
    """What FeatureStore.provenance returns (interfaces.md), for a store built without ImageNet weights."""
    return {
        "schema_version": 1, "backbone": "resnet50", "weights": "random" if random_weights else "imagenet",
        "weights_sha256": None if random_weights else "0" * 64, "random_weights": random_weights,
        "frames": 8, "crop": 112, "margin": 1.3, "feature_dim": 2048,
        "detector": {"name": "mtcnn", "min_face": 20, "thresholds": [0.6, 0.7, 0.7], "scale_factor": 0.709,
                     "max_side": 960, "smooth": 3, "fallback": "missing"},
        "versions": {"python": "3.11.2", "torch": "2.14.1", "torchvision": "0.29.1", "h5py": "3.16.0",
                     "ffmpeg": "ffmpeg version 6.1"},
        "created": "2025-01-01T00:00:00+00:00", "config": {"frames": 8, "crop": 112, "weights": "auto"},
        "manifest_sha256": "ab" * 32, "path": str(path),
        "command": f"python -m pipeline features demo/data --store {path} --weights auto --frames 8 --crop 112",
    }


def make_run(root: Path, n_test: int = 40, n_val: int = 24, single_class_test: bool = False,
             random_weights: bool = True, seed: int = 0) -> Path:
    """A run folder: run.json, members/<name>/history.csv, predictions.csv (long, val and test)."""
    rng = np.random.default_rng(seed)
    run_dir = root / "run"
    rows = []
    for split, n in (("val", n_val), ("test", n_test)):
        labels = np.ones(n, int) if (split == "test" and single_class_test) else np.arange(n) % 2
        no_face = np.zeros(n, bool)
        no_face[[1, 4]] = True                               # two videos without a face: 0.5 everywhere
        shared = rng.normal(0, 1, n)                          # members agree on hard videos
        probs = {}
        for name, strength in STRENGTH.items():
            logit = strength * (labels - 0.5) * 2 + 0.8 * shared + rng.normal(0, 1, n)
            probs[name] = np.where(no_face, 0.5, 1 / (1 + np.exp(-logit)))
        probs["ensemble"] = np.mean([probs[m] for m, _, _ in MEMBERS], axis=0)
        for i in range(n):
            for model, p in probs.items():
                rows.append({"video_id": f"{split}/v{i:03d}.mp4", "split": split, "label": int(labels[i]),
                             "group": f"{split}-id{i // 2}", "model": model, "prob_fake": f"{p[i]:.6f}",
                             "no_face": int(no_face[i])})
    run_dir.mkdir(parents=True)
    with (run_dir / "predictions.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(run_folder.PREDICTION_COLUMNS))
        w.writeheader()
        w.writerows(rows)
    for name, head, s in MEMBERS:
        member = run_dir / "members" / name
        member.mkdir(parents=True)
        epochs = np.arange(1, 6)
        with (member / "history.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(run_folder.HISTORY_COLUMNS)
            for e in epochs:
                w.writerow([e, 0.7 / e, 0.6 + 0.07 * e, 0.55 + 0.07 * e, 0.72 / e ** 0.5, 0.58 + 0.05 * e,
                            0.55 + 0.05 * e, 1e-3])
        (member / "config.json").write_text(json.dumps({"head": head, "seed": s}))
    info = {"store": store_provenance(root / "features.h5", random_weights),
            "members": [{"name": n, "head": h, "options": {"hidden": 64}, "seed": s} for n, h, s in MEMBERS],
            "train_config": {"epochs": 5, "lr": 1e-3}, "threshold": 0.47, "created": "2025-01-02T00:00:00+00:00",
            "versions": {"python": "3.11.2", "torch": "2.14.1"},
            "command": f"python -m pipeline train-ensemble --store {root / 'features.h5'} --run {run_dir}"}
    (run_dir / "run.json").write_text(json.dumps(info, indent=2))
    return run_dir


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> Path:
    run_dir = make_run(tmp_path_factory.mktemp("report"))
    (run_dir.parent / "predictions.before").write_bytes((run_dir / "predictions.csv").read_bytes())
    code = cli.main(["report", str(run_dir), "--bootstrap", "200"])
    assert code == 0
    return run_dir


def test_report_writes_every_output(demo_run):
    for name in ("report.md", "report.html", "metrics.json", "comparisons.csv", "predictions.csv",
                 "report_config.json"):
        assert (demo_run / name).is_file(), name
    pngs = sorted(p.name for p in (demo_run / "report_files").glob("*.png"))
    assert pngs == ["calibration.png", "confusion.png", "pairwise.png", "roc.png", "roc_pr.png",
                    "score_histograms.png", "training_curves.png"]     # no evaluation sets: no matrix, no robustness


def test_report_opens_with_verdict_and_random_weights_banner(demo_run):
    md = (demo_run / "report.md").read_text()
    top = md[:2500]
    assert "RANDOM BACKBONE WEIGHTS" in top
    assert re.search(r"Best on test ROC AUC \(video-level\): \w+, AUC 0\.\d{3} \[95% CI", top)
    assert "after Holm" in top
    # The answer first: provenance moved below the results, into a collapsible section (HTML <details>).
    assert md.index("## Comparisons") < md.index("## Metrics") < md.index("## Provenance")
    assert "frame-level: not available for these heads" in md
    for field in ("schema version", "frames per video (T)", "face crop (px)", "face detector", "mtcnn",
                  "weights sha256", "python -m pipeline train-ensemble", "python -m pipeline report",
                  "no face found (scored 0.5)"):
        assert field in md, field


def test_every_model_has_a_row_and_labelled_metrics(demo_run):
    md = (demo_run / "report.md").read_text()
    data = json.loads((demo_run / "metrics.json").read_text())
    models = {m for m, _, _ in MEMBERS} | {"ensemble"}
    assert set(data["models"]) == models
    for m in models:
        assert re.search(rf"^\| {m} \| ", md, re.M), m
        rec = data["models"][m]
        assert rec["level"] == "video" and rec["split"] == "test"
        lo, hi = rec["metrics"]["roc_auc"]["ci"]
        assert lo <= rec["metrics"]["roc_auc"]["value"] <= hi
    assert data["models"]["ensemble"]["thresholds"] == {"0.5": 0.5, "val": 0.47}     # from run.json
    assert data["models"]["meanpool"]["role"].startswith("baseline")
    assert "Metrics: video-level, test split" in md


def test_metrics_agree_with_sklearn(demo_run):
    data = load.load_run(demo_run).splits["test"]
    y, p = data.labels, data.prob("gru_s0")
    rec = json.loads((demo_run / "metrics.json").read_text())["models"]["gru_s0"]
    m = {k: v["value"] for k, v in rec["metrics"].items()}
    t = rec["thresholds"]["val"]
    pred = (p >= t).astype(int)
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p))
    assert m["average_precision"] == pytest.approx(skm.average_precision_score(y, p))
    assert m["brier"] == pytest.approx(skm.brier_score_loss(y, p))
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, p))
    assert m["accuracy@val"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["balanced_accuracy@val"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert m["kappa@val"] == pytest.approx(skm.cohen_kappa_score(y, pred))
    assert m["f1_real@val"] == pytest.approx(skm.f1_score(y, pred, pos_label=0))
    assert m["precision_fake@val"] == pytest.approx(skm.precision_score(y, pred))
    assert rec["confusion"]["val"] == skm.confusion_matrix(y, pred).tolist()


def test_comparisons_cover_every_pair_with_holm(demo_run):
    with (demo_run / "comparisons.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 15                                  # 6 models, every pair once
    pairs = {frozenset((r["model_a"], r["model_b"])) for r in rows}
    assert len(pairs) == 15
    for r in rows:
        assert float(r["delong_p_holm"]) >= float(r["delong_p"])
        assert float(r["auc_a"]) >= float(r["auc_b"])           # better model first
        assert r["verdict"].startswith(r["model_a"])
    best = [r for r in rows if "meanpool" in (r["model_a"], r["model_b"]) and r["model_a"] == "gru_s0"]
    assert best and "beats meanpool" in best[0]["verdict"]     # a 3.5-logit gap on 40 videos is clear


def test_seed_test_warns_that_two_seeds_cannot_reach_significance(demo_run):
    data = json.loads((demo_run / "metrics.json").read_text())
    seeds = data["seeds"]
    assert seeds["available"] and {"gru", "lstm"} <= set(seeds["heads"])
    assert any("smallest possible two-sided p is 0.5" in w for w in seeds["warnings"])


def test_html_is_self_contained_with_every_image_embedded(demo_run):
    page = (demo_run / "report.html").read_text()
    srcs = re.findall(r'<img src="([^"]+)"', page)
    assert len(srcs) == 7
    assert all(s.startswith("data:image/png;base64,") and len(s) > 5000 for s in srcs)
    assert "http://" not in page and "https://" not in page
    assert 'class="banner danger"' in page


def test_predictions_csv_is_left_untouched(demo_run):
    assert (demo_run / "predictions.csv").read_bytes() == (demo_run.parent / "predictions.before").read_bytes()


def test_single_class_test_split_gives_a_clear_message_not_a_crash(tmp_path):
    run_dir = make_run(tmp_path, n_test=12, single_class_test=True)
    run(ReportConfig(run=str(run_dir), bootstrap=100))
    md = (run_dir / "report.md").read_text()
    assert "The test split has only fake videos (12)" in md
    assert "ROC AUC is undefined on the test split" in md
    assert "Only 12 test videos" in md                        # small-split warning
    data = json.loads((run_dir / "metrics.json").read_text())
    assert data["models"]["ensemble"]["metrics"]["roc_auc"]["value"] is None
    assert data["models"]["ensemble"]["metrics"]["accuracy@val"]["value"] is not None
    assert not (run_dir / "report_files" / "roc_pr.png").exists()


def test_no_test_split_falls_back_to_val_and_says_so(tmp_path):
    run_dir = make_run(tmp_path)
    lines = (run_dir / "predictions.csv").read_text().splitlines()
    (run_dir / "predictions.csv").write_text("\n".join(l for l in lines if ",test," not in l) + "\n")
    run(ReportConfig(run=str(run_dir), bootstrap=100))
    md = (run_dir / "report.md").read_text()
    assert "Best on val ROC AUC" in md and "no test split" in md


@pytest.mark.parametrize("damage, message", [
    (lambda t: t.replace(",ensemble,", ",ensemble2,", 1), "no prediction for"),
    (lambda t: t.replace("prob_fake", "score"), "missing column"),
    (lambda t: t + t.splitlines()[1] + "\n", "two rows"),
])
def test_bad_predictions_csv_is_a_one_line_error(tmp_path, capsys, damage, message):
    run_dir = make_run(tmp_path, n_test=8, n_val=8)
    path = run_dir / "predictions.csv"
    path.write_text(damage(path.read_text()))
    assert cli.main(["report", str(run_dir)]) == 2
    assert message in capsys.readouterr().err


def test_missing_run_folder_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["report", str(tmp_path / "nope")]) == 2
    assert "run folder not found" in capsys.readouterr().err


def test_sizes_come_from_the_store_when_it_is_on_disk(tmp_path, monkeypatch):
    """With the store file present, the train split and extraction failures are counted too."""
    import types
    from pipeline.report import provenance

    run_dir = make_run(tmp_path, n_test=8, n_val=8)
    (tmp_path / "features.h5").write_bytes(b"")           # exists; the fake module below reads it

    class FakeStore:
        def __init__(self, path):
            self.path = path

        @classmethod
        def open(cls, path):
            return cls(path)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def videos(self, split=None, label=None, status=("ok", "no_face")):
            rec = types.SimpleNamespace
            rows = [rec(split="train", label=i % 2, status="ok") for i in range(30)]
            rows += [rec(split="train", label=1, status="no_face"), rec(split="train", label=0, status="failed")]
            return [r for r in rows if r.status in status]

    fake = types.ModuleType("features.store")
    fake.FeatureStore, fake.StoreError = FakeStore, RuntimeError
    monkeypatch.setitem(sys.modules, "features.store", fake)
    sizes, source = provenance.dataset_sizes(load.load_run(run_dir))
    assert source == f"store {tmp_path / 'features.h5'}"
    assert sizes == [{"split": "train", "real": 15, "fake": 16, "no_face": 1, "failed": 1}]


def test_options_from_a_toml_config(tmp_path):
    run_dir = make_run(tmp_path, n_test=8, n_val=8)
    config = tmp_path / "report.toml"
    config.write_text("[report]\nbootstrap = 150\nsplit = 'val'\n")
    assert cli.main(["report", str(run_dir), "--config", str(config), "--seed", "3"]) == 0
    saved = json.loads((run_dir / "report_config.json").read_text())
    assert (saved["bootstrap"], saved["split"], saved["seed"]) == (150, "val", 3)
    assert json.loads((run_dir / "metrics.json").read_text())["split"] == "val"


def test_threshold_metrics_edge_cases():
    y = np.array([1, 1, 1])
    out = dict(zip(metrics.AT_THRESHOLD, metrics.threshold_metrics(y, np.array([0.9, 0.2, 0.7]), 0.5)))
    assert out["accuracy"] == pytest.approx(2 / 3)
    assert np.isnan(out["recall_real"]) and out["kappa"] == 0.0           # scikit-learn agrees: 0
    perfect = dict(zip(metrics.AT_THRESHOLD, metrics.threshold_metrics(y, np.array([0.9, 0.8, 0.7]), 0.5)))
    assert np.isnan(perfect["kappa"])                                      # chance agreement is 1
    assert out["balanced_accuracy"] == pytest.approx(2 / 3)       # only the class that is present
    flat = metrics.stat_vector(np.array([0, 1, 0, 1]), np.full(4, 0.5), {"0.5": 0.5, "val": 0.5})
    assert flat[metrics.STATS.index("roc_auc")] == 0.5
    assert flat[metrics.STATS.index("accuracy@0.5")] == 0.5


# ---------------------------------------------------------------- headless browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHECK_IMAGES = """<script>
window.addEventListener('load', () => {
  const imgs = [...document.images];
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.setAttribute('data-images', imgs.length + ':' + ok);
});
</script></body>"""


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install -y chromium)")
def test_html_renders_in_headless_chromium_with_every_image(demo_run, tmp_path):
    page = (demo_run / "report.html").read_text().replace("</body>", CHECK_IMAGES)
    probe = tmp_path / "probe.html"
    probe.write_text(page)
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000"]
    out = subprocess.run([*flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    found = re.search(r'data-images="(\d+):(\d+)"', out.stdout)
    assert found, "the page did not finish loading"
    assert found.group(1) == found.group(2) == "7"
    shot = tmp_path / "report.png"
    out = subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1280,2400",
                          (demo_run / "report.html").as_uri()], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and shot.stat().st_size > 20_000, out.stderr[-2000:]



@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install -y chromium)")
def test_first_1000_pixels_show_the_headline_the_compact_table_and_the_roc(demo_run, tmp_path):
    """The answer first: in a 1280x1000 window the headline, the compact table and the ROC figure are all in
    view before any scrolling, and the provenance is not (it is collapsed further down)."""
    from tests.browser import positions
    pos = positions(demo_run / "report.html", ["headline", "summary", "roc"], tmp_path)
    for element in ("headline", "summary", "roc"):
        assert element in pos, element
        assert 0 <= pos[element][0] < pos[element][1] <= 1000, (element, pos[element])
    assert pos["_images"][0] == pos["_images"][1] == 7
    html = (demo_run / "report.html").read_text()
    table = html[html.index('<table id="summary"'):html.index("</table>", html.index('<table id="summary"'))]
    assert table.count("<tr>") == 1 + 6                         # header + every model
    for header in ("video AUC", "video AP", "video EER", "video accuracy @val threshold"):
        assert header in table
    assert html.index("<summary>Provenance</summary>") > html.index('id="roc"')

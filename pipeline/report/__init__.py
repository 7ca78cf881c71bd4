"""``make report``: metrics, paired statistical comparisons, figures and a readable report for a training run.

``run(ReportConfig) -> Path`` reads RUN/run.json, RUN/predictions.csv and RUN/members/*/history.csv (the
pinned run-folder layout) and writes into the run folder:

    report.md, report.html (self-contained), metrics.json, comparisons.csv, report_config.json,
    report_files/*.png

RUN/predictions.csv (written by training, one row per video and model) is the per-video predictions output:
the report validates it and points to it, and never rewrites it.
"""
from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ensembles.run_folder import FIGURES as FIGURES_DIR
from ensembles.run_folder import RunError
from pipeline.core import config as cfglib
from pipeline.core.atomic import json_safe, write_json, write_text
from pipeline.core.config import field
from pipeline.report import document, pairs, plots, provenance, render
from pipeline.report.load import RunData, load_run
from pipeline.report.metrics import STATS, evaluate, model_record

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReportConfig:
    run: str = field("runs/latest", "training run folder (run.json, predictions.csv, members/)", cli=False)
    split: str = field("auto", "split to evaluate: test, val, or auto (test when present, else val)",
                       choices=("auto", "test", "val"))
    bootstrap: int = field(2000, "bootstrap resamples for the 95% intervals")
    seed: int = field(0, "random seed of the bootstrap")
    alpha: float = field(0.05, "significance level (after Holm) and 1 - interval coverage")
    exact_below: int = field(25, "McNemar: exact binomial test below this many discordant videos")
    calibration_bins: int = field(10, "equal-width bins of the reliability diagram")

    def validate(self) -> None:
        if self.split not in ("auto", "test", "val"):
            raise cfglib.ConfigError(f"split must be auto, test or val, got {self.split!r}")
        if self.bootstrap < 100:
            raise cfglib.ConfigError(f"bootstrap needs at least 100 resamples for a 95% interval, got {self.bootstrap}")
        if not 0 < self.alpha < 0.5:
            raise cfglib.ConfigError(f"alpha must be in (0, 0.5), got {self.alpha}")
        if self.calibration_bins < 2:
            raise cfglib.ConfigError("calibration_bins must be at least 2")


def choose_split(run: RunData, wanted: str) -> str:
    if wanted == "auto":
        for split in ("test", "val"):
            if split in run.splits:
                return split
        raise RunError(f"{run.predictions_path} has neither a test nor a val split "
                          f"(found: {', '.join(sorted(run.splits))})")
    if wanted not in run.splits:
        raise RunError(f"{run.predictions_path} has no {wanted!r} rows (found: {', '.join(sorted(run.splits))})")
    return wanted


def report_command(cfg: ReportConfig) -> str:
    return (f"python -m pipeline report {cfg.run} --split {cfg.split} --bootstrap {cfg.bootstrap} "
            f"--seed {cfg.seed} --alpha {cfg.alpha:g} --exact-below {cfg.exact_below} "
            f"--calibration-bins {cfg.calibration_bins}")


def _figures(ev, run: RunData, folder: Path, bins: int) -> dict[str, tuple[str, str]]:
    """Draw and save every figure; {relative path: (title, caption)} of those that could be drawn."""
    d = ev.data
    specs = [
        ("training_curves.png", "Training curves", "Per member and epoch: loss, AUC and accuracy on train "
         "and val (video-level).", lambda: plots.training_curves(run.histories)),
        ("roc_pr.png", "ROC and precision-recall curves", f"All models, {d.split} split, video-level.",
         lambda: plots.roc_pr(ev)),
        ("confusion.png", "Confusion matrices", "Counts and share of each true class at the validation "
         "threshold.", lambda: plots.confusion_matrices(ev)),
        ("calibration.png", "Calibration (reliability diagram)", "Mean predicted prob_fake vs observed share "
         "of fakes per bin; on the diagonal is calibrated.", lambda: plots.calibration(ev, bins)),
        ("score_histograms.png", "Score histograms by class", "prob_fake of real and fake videos; dotted 0.5, "
         "dashed the validation threshold.", lambda: plots.score_histograms(ev)),
    ]
    out = {}
    for name, title, caption, draw in specs:
        fig = draw()
        if fig is None:
            log.info("figure %s skipped: not enough data for it", name)
            continue
        plots.save(fig, folder / FIGURES_DIR / name)
        out[f"{FIGURES_DIR}/{name}"] = (title, caption)
    return out


def _write_comparisons(rows: list[dict], path: Path) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=pairs.COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: json_safe(row[k]) for k in pairs.COLUMNS})
    write_text(path, buf.getvalue())


def run(cfg: ReportConfig) -> Path:
    """Write the report into the run folder; returns the path of report.md."""
    data = load_run(cfg.run)
    folder = data.run_dir
    split = choose_split(data, cfg.split)
    log.info("evaluating %d models on %d %s videos (%d bootstrap resamples)", len(data.splits[split].models),
             len(data.splits[split].labels), split, cfg.bootstrap)
    ev = evaluate(data, split, cfg.bootstrap, cfg.seed, cfg.alpha)
    rows = pairs.compare_all(ev, cfg.exact_below)
    seeds = pairs.seed_tests(data, ev)
    headline = pairs.headline(ev, rows)
    prov = provenance.collect(data, report_command(cfg))
    figures = _figures(ev, data, folder, cfg.calibration_bins)
    outputs = [("report.md / report.html", "this report (the HTML embeds its images)"),
               ("metrics.json", "every metric with its interval, thresholds, confusion matrices, provenance"),
               ("comparisons.csv", "one row per pair of models: effect sizes, raw and Holm p-values"),
               ("predictions.csv", "written by training, left as is: one row per (video, model) with prob_fake; "
                                   "every number here is computed from it"),
               ("report_config.json", "the resolved options of this report"),
               (f"{FIGURES_DIR}/*.png", "the figures")]
    notes = [*data.notes, *ev.notes]
    title = f"Deepfake detector report: {folder.name}"
    blocks = document.compose(title, headline, ev, prov, rows, seeds, figures, outputs, notes, cfg.bootstrap)
    runf = data.folder
    runf.write_report_text("report.md", render.markdown(blocks))
    runf.write_report_text("report.html", render.html_page(blocks, title, folder))
    _write_comparisons(rows, runf.report_file("comparisons.csv"))
    metrics = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "run": str(folder),
        "split": split, "level": "video", "frame_level": document.FRAME_LEVEL, "headline": headline,
        "n_videos": len(ev.data.labels), "n_fake": int(ev.data.labels.sum()),
        "bootstrap": {"resamples": cfg.bootstrap, "seed": cfg.seed, "unit": ev.resampling,
                      "interval": f"{100 * (1 - cfg.alpha):g}% percentile"},
        "decision_rule": "fake when prob_fake >= threshold", "stats": list(STATS),
        "models": {m: {"role": document.role(m, data.members), **model_record(ev, m)} for m in ev.data.models},
        "comparisons": rows, "seeds": seeds, "warnings": document.reader_warnings(ev), "notes": notes,
        "provenance": prov, "figures": list(figures),
        "predictions": str(data.predictions_path),
    }
    write_json(runf.report_file("metrics.json"), metrics)
    cfglib.save(cfg, runf.report_file("report_config.json"))
    log.info("report written: %s", folder / "report.html")
    return folder / "report.md"

"""``make report``: metrics, paired statistical comparisons, figures and a readable report for a training run.

``run(ReportConfig) -> Path`` reads RUN/run.json, RUN/predictions.csv, RUN/frames.csv, RUN/members/*/history.csv
and every RUN/evaluations/<set>/ (written by ``evaluate``), all through ``ensembles.run_folder``, and writes
into the run folder:

    report.md, report.html (self-contained), metrics.json, comparisons.csv, report_config.json,
    report_files/*.png

Every set of videos (the run's own test split, and each evaluation set) gets the same metrics, bootstrap
intervals and paired tests; across sets come the cross-dataset matrix and the robustness curves; with
``compare`` other runs are put beside this one (paired tests between ensembles on the same videos).
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
from pipeline.report.metrics import STATS, model_record
from pipeline.report.sets import (SetResult, compare_runs, cross_dataset, evaluate_set, report_sets, robustness,
                                  run_label)

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
    compare: tuple[str, ...] = field((), "other run folders to put beside this one: the cross-dataset matrix "
                                     "gets their rows, and their ensembles are tested against this one's on "
                                     "every set both were evaluated on", cli=False)

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
            f"--calibration-bins {cfg.calibration_bins}"
            + (f" --compare {' '.join(cfg.compare)}" if cfg.compare else ""))


def _figures(primary: SetResult, run: RunData, matrix: dict | None, robust: list[dict], cfg: ReportConfig,
             folder: Path) -> dict[str, tuple[str, str, str]]:
    """Draw and save every figure; {key: (relative path, title, caption)} of those that could be drawn."""
    ev, where = primary.ev, primary.set.label
    specs = [
        ("roc", "ROC curves", f"All models, {where}, video-level.", lambda: plots.roc(ev, ev.data.split + " split")),
        ("matrix", "Cross-dataset matrix", "Video-level ROC AUC [95% CI] of every model on every unperturbed "
         "set.", lambda: plots.cross_dataset(matrix) if matrix else None),
        ("pairwise", "Pairwise comparisons", "AUC of the row model minus the column model (video-level), with "
         "DeLong's p after Holm's correction.", lambda: plots.pairwise(ev, primary.pairs, cfg.alpha)),
        ("robustness", "Robustness", "Video-level ROC AUC against perturbation level, one line per perturbation, "
         "one panel per model.", lambda: plots.robustness(robust)),
        ("training_curves", "Training curves", "Per member and epoch: loss, AUC and accuracy on train "
         "and val (video-level).", lambda: plots.training_curves(run.histories)),
        ("roc_pr", "ROC and precision-recall curves", f"All models, {where}, video-level.",
         lambda: plots.roc_pr(ev)),
        ("confusion", "Confusion matrices", "Counts and share of each true class at the validation "
         "threshold.", lambda: plots.confusion_matrices(ev)),
        ("calibration", "Calibration (reliability diagram)", "Mean predicted prob_fake vs observed share "
         "of fakes per bin; on the diagonal is calibrated.", lambda: plots.calibration(ev, cfg.calibration_bins)),
        ("score_histograms", "Score histograms by class", "prob_fake of real and fake videos; dotted 0.5, "
         "dashed the validation threshold.", lambda: plots.score_histograms(ev)),
    ]
    out = {}
    for key, title, caption, draw in specs:
        fig = draw()
        if fig is None:
            log.info("figure %s skipped: not enough data for it", key)
            continue
        plots.save(fig, folder / FIGURES_DIR / f"{key}.png")
        out[key] = (f"{FIGURES_DIR}/{key}.png", title, caption)
    return out


def _set_record(x: SetResult, members: list[dict]) -> dict:
    d, fl = x.ev.data, x.frames
    return {"name": x.set.name, "label": x.set.label, "kind": x.set.kind, "perturb": x.set.perturb,
            "splits": list(x.set.key[1]), "store": x.set.meta.get("store", {}).get("path"), "level": "video",
            "n_videos": len(d.labels), "n_fake": int(d.labels.sum()), "headline": x.headline,
            "models": {m: {"role": document.role(m, members), **model_record(x.ev, m)} for m in d.models},
            "frame_level": {m: fl.record(m) for m in fl.models} if fl else {},
            "comparisons": x.pairs, "warnings": document.reader_warnings(x.ev, x.set.label)}


def _write_comparisons(rows: list[dict], path: Path) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=pairs.COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: json_safe(row[k]) for k in pairs.COLUMNS})
    write_text(path, buf.getvalue())


def _results(run: RunData, cfg: ReportConfig) -> tuple[list[SetResult], list[str]]:
    sets, notes = report_sets(run, choose_split(run, cfg.split))
    for s in sets:
        log.info("evaluating %d models on %d videos of %s (%d bootstrap resamples)", len(s.data.models),
                 len(s.data.labels), s.label, cfg.bootstrap)
    return [evaluate_set(run, s, cfg) for s in sets], notes


def run(cfg: ReportConfig) -> Path:
    """Write the report into the run folder; returns the path of report.md."""
    data = load_run(cfg.run)
    folder = data.folder
    results, notes = _results(data, cfg)
    primary = results[0]
    ev, rows = primary.ev, primary.pairs
    others = [load_run(path) for path in cfg.compare]
    labels = [run_label(r, [data, *others]) for r in (data, *others)]
    matrix_runs, run_pairs = [(labels[0], results)], []
    for other, label in zip(others, labels[1:]):
        other_results, _ = _results(other, cfg)
        matrix_runs.append((label, other_results))
        pairs_, more = compare_runs((labels[0], results), (label, other_results), cfg)
        run_pairs += pairs_
        notes += more
    matrix, robust = cross_dataset(matrix_runs), robustness(results, labels[0])
    seeds = pairs.seed_tests(data, ev)
    prov = provenance.collect(data, report_command(cfg))
    figures = _figures(primary, data, matrix, robust, cfg, data.run_dir)
    outputs = [("report.md / report.html", "this report (the HTML embeds its images)"),
               ("metrics.json", "every metric with its interval, per set, thresholds, confusion matrices, "
                                "cross-dataset matrix, robustness, provenance"),
               ("comparisons.csv", "one row per pair of models and set: effect sizes, raw and Holm p-values"),
               ("predictions.csv", "written by training, left as is: one row per (video, model) with prob_fake; "
                                   "every number here is computed from it and from evaluations/*/predictions.csv"),
               ("report_config.json", "the resolved options of this report"),
               (f"{FIGURES_DIR}/*.png", "the figures")]
    notes = [*data.notes, *ev.notes, *notes]
    title = f"Deepfake detector report: {data.run_dir.name}"
    content = document.Content(title, primary, results[1:], prov, seeds, figures, outputs, notes, cfg.bootstrap,
                               cfg.alpha, matrix, robust, run_pairs, labels if others else [],
                               cfglib.to_dict(cfg))
    blocks = document.compose(content)
    folder.write_report_text("report.md", render.markdown(blocks))
    folder.write_report_text("report.html", render.html_page(blocks, title, data.run_dir))
    _write_comparisons([*(row for x in results for row in x.pairs), *run_pairs], folder.report_file("comparisons.csv"))
    fl = primary.frames
    metrics = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "run": str(data.run_dir),
        "split": ev.data.split, "level": "video", "headline": primary.headline,
        "frame_level": {"available": fl is not None, "note": "frame-level metrics of the heads that score frames"
                        if fl else document.FRAME_LEVEL, "models": {m: fl.record(m) for m in fl.models} if fl else {}},
        "n_videos": len(ev.data.labels), "n_fake": int(ev.data.labels.sum()),
        "bootstrap": {"resamples": cfg.bootstrap, "seed": cfg.seed, "unit": ev.resampling,
                      "interval": f"{100 * (1 - cfg.alpha):g}% percentile"},
        "decision_rule": "fake when prob_fake >= threshold", "stats": list(STATS),
        "models": {m: {"role": document.role(m, data.members), **model_record(ev, m)} for m in ev.data.models},
        "comparisons": rows, "seeds": seeds, "warnings": document.reader_warnings(ev), "notes": notes,
        "sets": {x.set.name: _set_record(x, data.members) for x in results},
        "cross_dataset": matrix, "robustness": robust, "compared_runs": labels[1:], "run_comparisons": run_pairs,
        "provenance": prov, "figures": [rel for rel, _, _ in figures.values()],
        "predictions": str(data.predictions_path),
    }
    write_json(folder.report_file("metrics.json"), metrics)
    cfglib.save(cfg, folder.report_file("report_config.json"))
    log.info("report written: %s", data.run_dir / "report.html")
    return data.run_dir / "report.md"

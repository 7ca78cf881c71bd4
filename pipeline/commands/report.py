"""``python -m pipeline report RUN``: write report.md/.html, metrics.json and comparisons.csv for a run."""
from __future__ import annotations

import argparse
import json

HELP = ("Metrics with bootstrap intervals, paired tests between models (DeLong, McNemar, Wilcoxon, Holm) on the "
        "run's test split and every evaluation set, a cross-dataset matrix, robustness curves, figures and a "
        "self-contained HTML report for a training run")


def configure(parser: argparse.ArgumentParser) -> None:
    from pipeline.core.config import add_options
    from pipeline.report import ReportConfig
    parser.add_argument("run", metavar="RUN", help="training run folder (holds run.json and predictions.csv)")
    parser.add_argument("--compare", nargs="+", metavar="RUN2", default=None,
                        help="other run folder(s) to put beside RUN: their rows join the cross-dataset matrix and "
                             "their ensembles are tested against RUN's on every set both were evaluated on")
    parser.add_argument("--config", metavar="FILE", help="TOML file; its 'report' table (or top level) sets options")
    add_options(parser, ReportConfig)


def _cell(metric: dict):
    from pipeline.ui import line
    v, ci = metric["value"], metric["ci"]
    if v is None:
        return "n/a"
    return f"{v:.3f}" if ci[0] is None else line(f"{v:.3f}\n", (f"{ci[0]:.2f}-{ci[1]:.2f}", "dim"))


def _table():
    from rich import box
    from rich.table import Table
    return Table(box=box.SIMPLE_HEAD, show_lines=True, collapse_padding=True, pad_edge=False)


def summary(metrics: dict, console) -> None:
    """The terminal view: one row per model, the cross-dataset matrix, the verdicts, where the files are.

    Titles and sentences are printed as their own lines (``ui.prose``): in a pipe or a CI log they stay
    whole instead of being wrapped to the table's width."""
    from pipeline.ui import cell, line, prose
    prov = metrics["provenance"]
    if prov.get("random_weights"):
        console.print(cell(" RANDOM BACKBONE WEIGHTS: these numbers do not reflect a pretrained backbone ",
                           "bold white on red"))
    prose(console, f"{metrics['split']} split, video-level, {metrics['n_videos']} videos ({metrics['n_fake']} "
                   "fake); 95% bootstrap interval under each value", "bold")
    table = _table()
    table.add_column("model", no_wrap=True)
    for col in ("ROC AUC", "EER", "log loss", "Brier", "accuracy @val", "F1 fake @val"):
        table.add_column(col, justify="right", min_width=9, no_wrap=True)
    for name, rec in metrics["models"].items():
        m = rec["metrics"]
        table.add_row(cell(name, "bold" if name == "ensemble" else ""),
                      *(_cell(m[k]) for k in ("roc_auc", "eer", "log_loss", "brier", "accuracy@val",
                                               "f1_fake@val")))
    console.print(table)
    matrix = metrics.get("cross_dataset")
    if matrix:
        prose(console, "cross-dataset: video-level ROC AUC per set (95% interval under each value)", "bold")
        grid = _table()
        grid.add_column("model", no_wrap=True)
        for col in matrix["columns"]:
            grid.add_column(cell(col), justify="right", min_width=9, no_wrap=True)
        for row in matrix["rows"]:
            grid.add_row(cell(row["label"]), *(_cell(row["cells"][c]) if c in row["cells"] else "-"
                                               for c in matrix["columns"]))
        console.print(grid)
    prose(console, metrics["headline"], "bold")
    for row in metrics["comparisons"]:
        prose(console, f"  - {row['verdict']}")
    for row in metrics.get("run_comparisons") or []:
        prose(console, f"  - runs, {row['set']}: {row['verdict']}")
    frame = metrics["frame_level"]
    if frame["available"]:
        for model, rec in frame["models"].items():
            auc = rec["metrics"]["roc_auc"]
            value = "n/a" if auc["value"] is None else f"{auc['value']:.3f}"
            prose(console, f"frame-level AUC of {model}: {value} over {rec['n_frames']} frames", "dim")
    else:
        prose(console, frame["note"], "dim")
    for warning in metrics["warnings"]:
        prose(console, line(("warning:", "bold yellow"), f" {warning}"))
    for note in metrics["notes"]:
        prose(console, line(("note:", "yellow"), f" {note}"))


def main(args: argparse.Namespace) -> int:
    from pipeline.core.config import resolve
    from pipeline.report import ReportConfig, run
    from pipeline.ui import out, prose
    cfg = resolve(ReportConfig, args, args.config, section="report", run=args.run,
                  compare=tuple(args.compare) if args.compare else None)
    md = run(cfg)
    folder = md.parent
    summary(json.loads((folder / "metrics.json").read_text()), out)
    prose(out, f"report: {folder / 'report.html'} (and {md.name}, metrics.json, comparisons.csv)")
    return 0

"""``python -m pipeline report RUN``: write report.md/.html, metrics.json and comparisons.csv for a run."""
from __future__ import annotations

import argparse
import json

HELP = ("Metrics with bootstrap intervals, paired tests between models (DeLong, McNemar, Wilcoxon, Holm), "
        "figures and a self-contained HTML report for a training run")


def configure(parser: argparse.ArgumentParser) -> None:
    from pipeline.core.config import add_options
    from pipeline.report import ReportConfig
    parser.add_argument("run", metavar="RUN", help="training run folder (holds run.json and predictions.csv)")
    parser.add_argument("--config", metavar="FILE", help="TOML file; its 'report' table (or top level) sets options")
    add_options(parser, ReportConfig)


def _cell(metric: dict):
    from pipeline.ui import line
    v, ci = metric["value"], metric["ci"]
    if v is None:
        return "n/a"
    return f"{v:.3f}" if ci[0] is None else line(f"{v:.3f}\n", (f"{ci[0]:.2f}-{ci[1]:.2f}", "dim"))


def summary(metrics: dict, console) -> None:
    """The terminal view: one row per model, the verdicts, and where the files are (the rest is in report.md)."""
    from rich import box
    from rich.table import Table

    from pipeline.ui import cell, line
    prov = metrics["provenance"]
    if prov.get("random_weights"):
        console.print(cell(" RANDOM BACKBONE WEIGHTS: these numbers do not reflect a pretrained backbone ",
                           "bold white on red"))
    table = Table(title=cell(f"{metrics['split']} split, video-level, {metrics['n_videos']} videos "
                             f"({metrics['n_fake']} fake); 95% bootstrap interval under each value"),
                  title_justify="left", box=box.SIMPLE_HEAD, show_lines=True,
                  collapse_padding=True, pad_edge=False)
    table.add_column("model", no_wrap=True)
    for col in ("ROC AUC", "EER", "log loss", "Brier", "accuracy @val", "F1 fake @val"):
        table.add_column(col, justify="right", min_width=9)
    for name, rec in metrics["models"].items():
        m = rec["metrics"]
        table.add_row(cell(name, "bold" if name == "ensemble" else ""),
                      *(_cell(m[k]) for k in ("roc_auc", "eer", "log_loss", "brier", "accuracy@val",
                                               "f1_fake@val")))
    console.print(table)
    console.print(cell(metrics["headline"], "bold"), highlight=False)
    for row in metrics["comparisons"]:
        console.print(cell(f"  - {row['verdict']}"), highlight=False)
    console.print(cell(metrics["frame_level"], "dim"), highlight=False)
    for warning in metrics["warnings"]:
        console.print(line(("warning:", "bold yellow"), f" {warning}"), highlight=False)
    for note in metrics["notes"]:
        console.print(line(("note:", "yellow"), f" {note}"), highlight=False)


def main(args: argparse.Namespace) -> int:
    from pipeline.core.config import resolve
    from pipeline.report import ReportConfig, run
    from pipeline.ui import cell, out
    cfg = resolve(ReportConfig, args, args.config, section="report", run=args.run)
    md = run(cfg)
    folder = md.parent
    summary(json.loads((folder / "metrics.json").read_text()), out)
    out.print(cell(f"report: {folder / 'report.html'} (and {md.name}, metrics.json, comparisons.csv)"),
              highlight=False)
    return 0

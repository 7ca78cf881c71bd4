"""``predict PATH... --run RUN``: probability of fake for each video, with optional explanations."""
from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

HELP = "judge a video, several, or a folder with a trained run (same preprocessing as its store)"


def configure(parser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH", help="video file(s) or folder(s)")
    parser.add_argument("--run", default="runs/latest", help="training run folder (default runs/latest), or "
                                                             "with --runtime onnx the bundle `export` wrote")
    parser.add_argument("--runtime", choices=("torch", "onnx"), default="torch",
                        help="where the backbone and heads run: torch (default) or onnxruntime (face "
                             "detection stays in torch; --run is then an ONNX bundle)")
    parser.add_argument("--json", action="store_true", help="print one JSON document with every result")
    parser.add_argument("--csv", action="store_true", help="print CSV rows (video_id, prob_fake, ...)")
    parser.add_argument("--explain", metavar="OUT", help="write a PNG per video: crops with Grad-CAM, "
                                                         "attention per frame, verdict")
    parser.add_argument("--annotate", metavar="OUT", help="write the video with the face box and verdict drawn "
                                                          "(a .mp4 path for one video, else a folder)")
    parser.add_argument("--cache", metavar="STORE", help="append the videos' features to this store")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")


def _print_table(preds, threshold: float) -> None:
    from rich.table import Table

    from pipeline.ui import cell, out
    members = sorted({m for p in preds for m in p.members})
    table = Table(title=cell(f"predictions (fake when p >= {threshold:.3f})"), title_justify="left")
    longest = max((len(p.video_id) for p in preds), default=5)
    table.add_column("video", no_wrap=True, min_width=min(longest, 60))   # the name must stay readable
    for col in ("P(fake)", "verdict", *members, "faces", "time"):
        table.add_column(cell(col), justify="left" if col == "verdict" else "right")
    style = {"fake": "bold red", "real": "bold green", "error": "red"}
    for p in preds:
        prob = "-" if p.prob_fake is None else f"{p.prob_fake:.3f}"
        verdict = p.label if not p.error else f"error: {p.error}"
        table.add_row(cell(p.video_id), prob, cell(verdict, style.get(p.label, "yellow")),
                      *[f"{p.members[m]:.3f}" if m in p.members else "-" for m in members],
                      f"{p.face_coverage:.0%}", f"{p.seconds:.1f}s")
    out.print(table)


def _print_csv(preds) -> None:
    buf = io.StringIO()
    members = sorted({m for p in preds for m in p.members})
    w = csv.writer(buf)
    w.writerow(["video_id", "path", "status", "prob_fake", "label", "face_coverage", "seconds", "error", *members])
    for p in preds:
        w.writerow([p.video_id, p.path, p.status, "" if p.prob_fake is None else f"{p.prob_fake:.6f}",
                    p.label, f"{p.face_coverage:.4f}", f"{p.seconds:.3f}", p.error,
                    *[f"{p.members.get(m, float('nan')):.6f}" for m in members]])
    sys.stdout.write(buf.getvalue())


def main(args) -> int:
    from ensembles.run_folder import load_run, trained_identity
    from features.writer import StoreWriter
    from pipeline.core.device import resolve_device
    from pipeline.core.errors import PipelineError
    from pipeline.predict import find_videos, pipeline_for_run, predict
    from pipeline.ui import RichProgress, console, line
    from stages.local_engine import LocalEngine

    run_dir = Path(args.run)
    if args.runtime == "onnx":
        from pipeline.bundle import load_bundle
        if args.explain or args.cache:
            raise PipelineError("--explain (Grad-CAM needs torch's gradients) and --cache (a store of torch "
                                "features) need --runtime torch")
        pipe, ensemble = load_bundle(run_dir, args.device)
    else:
        ensemble = load_run(run_dir, device=resolve_device(args.device))   # one-line error if not a finished run
        pipe = pipeline_for_run(ensemble.store, trained_identity(ensemble.info), args.device)
    engine = LocalEngine(pipe.cfg, pipe.faces, pipe=pipe)
    targets = find_videos(args.paths)
    if not targets:
        raise PipelineError("no videos to judge")
    cache = None
    if args.cache:
        cache = StoreWriter(args.cache, engine.provenance({"source": "predict --cache"}), engine.identity(), targets)
    keep = [] if (args.explain or args.annotate) else None
    preds = []
    try:
        with RichProgress(disable=args.json or args.csv or len(targets) < 2) as progress:
            for p in predict(targets, engine, ensemble, cache, keep, progress):
                if p.error:
                    console.print(line(("error", "red"), f" {p.path}: {p.error}"), highlight=False)
                preds.append(p)
    finally:
        if cache is not None:
            cache.close()
    if args.explain:
        from pipeline.explain import explain_video
        out = Path(args.explain)
        out.mkdir(parents=True, exist_ok=True)
        for res, p in zip(keep, preds):
            if p.status == "ok":
                explain_video(res, p, pipe, ensemble, out)
    if args.annotate:
        from pipeline.annotate import annotate_video
        for res, p in zip(keep, preds):
            if p.status != "failed":
                annotate_video(res, p, args.annotate, single=len(targets) == 1)
    if args.json:
        print(json.dumps({"run": str(run_dir), "threshold": ensemble.threshold,
                          "videos": [p.as_dict() for p in preds]}, indent=2))
    elif args.csv:
        _print_csv(preds)
    else:
        _print_table(preds, ensemble.threshold)
    return 1 if all(p.status == "failed" for p in preds) else 0

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
    parser.add_argument("--run", default="runs/latest", help="training run folder (default runs/latest)")
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

    from pipeline.ui import out
    members = sorted({m for p in preds for m in p.members})
    table = Table(title=f"predictions (fake when p >= {threshold:.3f})", title_justify="left")
    longest = max((len(p.video_id) for p in preds), default=5)
    table.add_column("video", no_wrap=True, min_width=min(longest, 60))   # the name must stay readable
    for col in ("P(fake)", "verdict", *members, "faces", "time"):
        table.add_column(col, justify="left" if col == "verdict" else "right")
    style = {"fake": "bold red", "real": "bold green", "error": "red"}
    for p in preds:
        prob = "-" if p.prob_fake is None else f"{p.prob_fake:.3f}"
        verdict = p.label if not p.error else f"error: {p.error}"
        table.add_row(p.video_id, prob, f"[{style.get(p.label, 'yellow')}]{verdict}[/]",
                      *[f"{p.members[m]:.3f}" if m in p.members else "-" for m in members],
                      f"{p.face_coverage:.0%}", f"{p.seconds:.1f}s")
    out.print(table)


def main(args) -> int:
    from features.writer import StoreWriter
    from pipeline.errors import PipelineError
    from ensembles.ensemble import load_run
    from pipeline.predict import find_videos, pipeline_for_run, predict
    from pipeline.ui import console, video_progress
    from stages.backbone import resolve_device

    run_dir = Path(args.run)
    ensemble = load_run(run_dir, device=resolve_device(args.device))   # one-line error if not a finished run
    threshold = ensemble.threshold
    pipe = pipeline_for_run(ensemble.store, args.device)
    targets = find_videos(args.paths)
    if not targets:
        raise PipelineError("no videos to judge")
    cache = None
    if args.cache:
        cache = StoreWriter(args.cache, pipe.provenance({"source": "predict --cache"}), pipe.identity(), targets)
    keep = [] if (args.explain or args.annotate) else None
    preds = []
    try:
        with video_progress(disable=args.json or args.csv or len(targets) < 2) as progress:
            task = progress.add_task("predict", total=len(targets), frames=0)
            for p in predict(targets, pipe, ensemble, threshold, cache, keep, progress, task):
                if p.error:
                    console.print(f"[red]error[/] {p.path}: {p.error}", highlight=False)
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
        print(json.dumps({"run": str(run_dir), "threshold": threshold,
                          "videos": [p.as_dict() for p in preds]}, indent=2))
    elif args.csv:
        buf = io.StringIO()
        members = sorted({m for p in preds for m in p.members})
        w = csv.writer(buf)
        w.writerow(["video_id", "path", "status", "prob_fake", "label", "face_coverage", "seconds", "error",
                    *members])
        for p in preds:
            w.writerow([p.video_id, p.path, p.status, "" if p.prob_fake is None else f"{p.prob_fake:.6f}",
                        p.label, f"{p.face_coverage:.4f}", f"{p.seconds:.3f}", p.error,
                        *[f"{p.members.get(m, float('nan')):.6f}" for m in members]])
        sys.stdout.write(buf.getvalue())
    else:
        _print_table(preds, threshold)
    return 1 if all(p.status == "failed" for p in preds) else 0

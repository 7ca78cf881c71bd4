"""``python -m pipeline faces VIDEO --frames N [--json] [--sheet out.png]``: what the face stage sees.

Per sampled frame: every detection (box, probability, landmarks) and which one is the video's subject. The
contact sheet draws them and puts the subject's crop beside each frame: the way to answer "why was no face
found" (too small for --min-face, below a threshold, another person, or no face at all).
"""
from __future__ import annotations

import argparse

HELP = "detect faces in a video's sampled frames: boxes, probabilities, the chosen subject, a contact sheet"


def configure(parser: argparse.ArgumentParser) -> None:
    from pipeline.core.config import add_options
    from stages.faces import FaceConfig
    parser.add_argument("video", metavar="VIDEO", help="video file")
    parser.add_argument("--frames", type=int, default=16, help="frames sampled evenly over the video (default 16)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    parser.add_argument("--sheet", metavar="PNG", help="write a contact sheet: frames with boxes and landmarks, "
                                                       "and the subject's crops")
    parser.add_argument("--crop", type=int, default=224, help="crop size in pixels for the sheet (default 224)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--config", metavar="FILE", help="TOML file: keys of its \"faces\" table set the options")
    add_options(parser, FaceConfig)


def _result(sampled, dets, track, seconds: float, detector) -> dict:
    frames = []
    for t, d in enumerate(dets):
        frames.append({
            "frame": int(sampled.indices[t]), "time": round(float(sampled.timestamps[t]), 3),
            "faces": [{"box": [round(float(v), 1) for v in d.boxes[i]], "prob": round(float(d.probs[i]), 4),
                       "landmarks": [[round(float(v), 1) for v in p] for p in d.landmarks[i]]}
                      for i in range(len(d))],
            "subject": int(track.chosen[t]) if track.found[t] else None,
            "subject_box": [round(float(v), 1) for v in track.boxes[t]] if track.found[t] else None,
        })
    return {"video": str(sampled.info.path), "size": [sampled.info.width, sampled.info.height],
            "frames_sampled": len(dets), "frames_with_faces": sum(len(d) > 0 for d in dets),
            "subject_found": int(track.found.sum()), "detect_seconds": round(seconds, 3),
            "detector": detector.describe(), "frames": frames}


def _print_table(res: dict) -> None:
    from rich.table import Table

    from pipeline.ui import cell, line, out
    table = Table(title=cell(f"faces in {res['video']} ({res['size'][0]}x{res['size'][1]})"), title_justify="left")
    for col in ("frame", "time s", "faces", "boxes x1,y1,x2,y2 (prob)", "subject"):
        table.add_column(col)
    for f in res["frames"]:
        boxes = "\n".join(f"{'*' if i == f['subject'] else ' '} {','.join(f'{v:.0f}' for v in face['box'])} "
                          f"({face['prob']:.3f})" for i, face in enumerate(f["faces"])) or "-"
        table.add_row(str(f["frame"]), f"{f['time']:.2f}", str(len(f["faces"])), boxes,
                      "-" if f["subject"] is None else f"#{f['subject']}")
    out.print(table)
    out.print(f"subject found in {res['subject_found']}/{res['frames_sampled']} frames; "
              f"faces in {res['frames_with_faces']} frames; detection {res['detect_seconds']:.2f} s")
    if res["frames_with_faces"] == 0:
        cfg = res["detector"]["config"]
        out.print(line(("no face found.", "yellow"), f" Faces smaller than {cfg['min_face']:g} px at detection scale "
                  f"(frames searched at most {cfg['max_side']} px on the longer side) or below the thresholds "
                  f"{cfg['thresholds']} are not reported: try --min-face, --max-side 0, --thresholds, and "
                  "--sheet to look at the frames."))


def main(args: argparse.Namespace) -> int:
    import json
    import sys
    import time

    from pipeline.core.config import resolve
    from pipeline.core.errors import PipelineError
    from stages.decode import sample_frames
    from stages.faces import FaceConfig, FaceDetector, crop_faces, select_subject

    if args.frames < 1:
        raise PipelineError(f"--frames must be >= 1, got {args.frames}")
    cfg = resolve(FaceConfig, args, args.config, section="faces")
    sampled = sample_frames(args.video, args.frames)
    detector = FaceDetector(cfg, device=args.device)
    start = time.perf_counter()
    dets = detector.detect(sampled.frames)
    seconds = time.perf_counter() - start
    track = select_subject(dets, frame_hw=sampled.frames.shape[1:3], cfg=cfg)
    res = _result(sampled, dets, track, seconds, detector)
    if args.sheet:
        from stages.faces.sheet import contact_sheet
        crops, valid = crop_faces(sampled.frames, track, crop=args.crop, margin=cfg.margin, fallback=cfg.fallback)
        labels = [f"frame {i} ({s:.2f} s)" for i, s in zip(sampled.indices, sampled.timestamps)]
        res["sheet"] = str(contact_sheet(sampled.frames, dets, track, crops, valid, args.sheet, labels))
    if args.json:
        sys.stdout.write(json.dumps(res, indent=2) + "\n")
    else:
        _print_table(res)
        if args.sheet:
            from pipeline.ui import cell, out
            out.print(cell(f"contact sheet: {res['sheet']}"))
    return 0

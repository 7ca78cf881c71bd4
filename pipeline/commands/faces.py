"""``python -m pipeline faces VIDEO --frames N [--json] [--sheet out.png]``: what the face stage sees.

Per sampled frame: every detection (box, probability, landmarks), which one is the video's subject, and where
the subject's box came from: the face search, the second look near the tracked subject (``--second-look``,
on by default), or nowhere. The contact sheet draws them and puts the subject's crop beside each frame: the
way to answer "why was no face found" (too small for --min-face, below a threshold, another person, or no
face at all).
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


def _result(sampled, dets, looked, seconds: float, detector) -> dict:
    from features.schema import SOURCE_NAMES, SECOND_LOOK
    from stages.faces.second_look import sources
    track = looked.track
    source = sources(track)
    frames = []
    for t, d in enumerate(dets):
        extra = looked.boxes[t] if source[t] == SECOND_LOOK else None
        frames.append({
            "source": SOURCE_NAMES[int(source[t])],
            "second_look": None if extra is None else {"box": [round(float(v), 1) for v in extra],
                                                       "prob": round(float(track.probs[t]), 4)},
            "frame": int(sampled.indices[t]), "time": round(float(sampled.timestamps[t]), 3),
            "faces": [{"box": [round(float(v), 1) for v in d.boxes[i]], "prob": round(float(d.probs[i]), 4),
                       "landmarks": [[round(float(v), 1) for v in p] for p in d.landmarks[i]]}
                      for i in range(len(d))],
            "subject": int(track.chosen[t]) if track.chosen[t] >= 0 else None,
            "subject_box": [round(float(v), 1) for v in track.boxes[t]] if track.found[t] else None,
        })
    return {"video": str(sampled.info.path), "size": [sampled.info.width, sampled.info.height],
            "frames_sampled": len(dets), "frames_with_faces": sum(len(d) > 0 for d in dets),
            "subject_found": int(track.found.sum()), "by_source": {name: int((source == code).sum())
                                                                  for code, name in SOURCE_NAMES.items()},
            "detect_seconds": round(seconds, 3), "second_look_seconds": round(looked.seconds, 3),
            "detector": detector.describe(), "frames": frames}


def _print_table(res: dict) -> None:
    from rich.table import Table

    from pipeline.ui import cell, line, out
    table = Table(title=cell(f"faces in {res['video']} ({res['size'][0]}x{res['size'][1]})"), title_justify="left")
    for col in ("frame", "time s", "faces", "boxes x1,y1,x2,y2 (prob)", "subject", "from"):
        table.add_column(col)
    for f in res["frames"]:
        boxes = "\n".join(f"{'*' if i == f['subject'] else ' '} {','.join(f'{v:.0f}' for v in face['box'])} "
                          f"({face['prob']:.3f})" for i, face in enumerate(f["faces"]))
        if f["second_look"]:
            look = f["second_look"]
            boxes = "\n".join(filter(None, [boxes, f"+ {','.join(f'{v:.0f}' for v in look['box'])} "
                                                   f"({look['prob']:.3f})"]))
        subject = "+" if f["second_look"] else "-" if f["subject"] is None else f"#{f['subject']}"
        table.add_row(str(f["frame"]), f"{f['time']:.2f}", str(len(f["faces"])), boxes or "-", subject,
                      f["source"])
    out.print(table)
    by = res["by_source"]
    out.print(f"subject found in {res['subject_found']}/{res['frames_sampled']} frames ({by['search']} by the "
              f"search, {by['second look']} by the second look (+), {by['none']} nowhere); faces in "
              f"{res['frames_with_faces']} frames; detection {res['detect_seconds']:.2f} s, second look "
              f"{res['second_look_seconds']:.2f} s")
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
    from stages.faces.second_look import Looked, second_look

    if args.frames < 1:
        raise PipelineError(f"--frames must be >= 1, got {args.frames}")
    cfg = resolve(FaceConfig, args, args.config, section="faces")
    sampled = sample_frames(args.video, args.frames)
    detector = FaceDetector(cfg, device=args.device)
    start = time.perf_counter()
    dets = detector.detect(sampled.frames)
    seconds = time.perf_counter() - start
    track = select_subject(dets, frame_hw=sampled.frames.shape[1:3], cfg=cfg)
    looked = second_look(sampled.frames, dets, track, detector) if cfg.second_look else Looked.nothing(track)
    res = _result(sampled, dets, looked, seconds, detector)
    if args.sheet:
        from stages.faces.sheet import contact_sheet
        crops, valid = crop_faces(sampled.frames, looked.track, crop=args.crop, margin=cfg.margin,
                                  fallback=cfg.fallback)
        labels = [f"frame {i} ({s:.2f} s)" for i, s in zip(sampled.indices, sampled.timestamps)]
        res["sheet"] = str(contact_sheet(sampled.frames, dets, looked.track, crops, valid, args.sheet,
                                         labels, second=looked.boxes))
    if args.json:
        sys.stdout.write(json.dumps(res, indent=2) + "\n")
    else:
        _print_table(res)
        if args.sheet:
            from pipeline.ui import cell, out
            out.print(cell(f"contact sheet: {res['sheet']}"))
    return 0

"""``export RUN OUT/``: ONNX models of the backbone and every member, and a manifest with their checksums."""
from __future__ import annotations

import json

HELP = "export a trained run to ONNX (backbone + every member head, manifest with checksums)"


def configure(parser) -> None:
    parser.add_argument("run", metavar="RUN", help="training run folder")
    parser.add_argument("out", metavar="OUT", help="bundle folder to write (new, empty, or an earlier bundle)")
    parser.add_argument("--json", action="store_true", help="print the manifest as JSON")


def main(args) -> int:
    from pipeline.export import export_run
    from pipeline.ui import RichProgress, cell, kv_table, out

    with RichProgress("files", disable=args.json) as progress:
        manifest = export_run(args.run, args.out, progress)
    if args.json:
        print(json.dumps(manifest, indent=2))
        return 0
    bb = manifest["backbone"]
    rows = [("bundle", args.out), ("backbone", f"{bb['file']}  {bb['bytes'] / 1e6:.1f} MB  sha256 {bb['sha256'][:16]}"),
            ("weights", f"{bb['weights']}  sha256 {bb['weights_sha256'][:16]}")]
    rows += [(f"member {m['name']}", f"{m['file']}  {m['bytes'] / 1e6:.1f} MB  max |dP| vs torch "
                                    f"{m['max_prob_diff_vs_torch']:.1e}") for m in manifest["members"]]
    rows += [("threshold", f"{manifest['threshold']:.4f}"), ("frames x crop", f"{manifest['frames']} x {manifest['crop']}"),
             ("seconds", manifest["seconds"])]
    if bb["random_weights"]:
        rows.append(("WARNING", cell("RANDOM BACKBONE WEIGHTS: the bundle holds a randomly initialised ResNet50",
                                     "bold red")))
    out.print(kv_table("ONNX bundle", rows))
    return 0

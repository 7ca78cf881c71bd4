"""``inspect STORE``: what a feature store holds and how it was made."""
from __future__ import annotations

import json

HELP = "summarise a feature store: videos by label, split and status, face coverage, failures, provenance"


def configure(parser) -> None:
    parser.add_argument("store", metavar="STORE", help="HDF5 feature store")
    parser.add_argument("--json", action="store_true", help="print summary and provenance as JSON")
    parser.add_argument("--failures", type=int, default=20, help="list up to N failed videos (default 20)")


def _perturbation(prov: dict) -> str:
    """What `features --perturb` did to the frames, or "none" for an unperturbed store."""
    p = prov.get("perturbation")
    if not p:
        return prov.get("perturb") or "none"
    return f"{p['name']}: {p['parameter']} {p['value']} (level {p['level']} of 5, {p['source']})"


def main(args) -> int:
    from rich.panel import Panel

    from features.store import FeatureStore
    from pipeline.ui import cell, kv_table, out

    with FeatureStore.open(args.store) as st:
        summary, prov = st.summary(), st.provenance
        failed = st.videos(status="failed")[:args.failures]
    if args.json:
        print(json.dumps({"summary": summary, "provenance": prov,
                          "failed": [{"video_id": r.video_id, "reason": r.reason} for r in failed]},
                         indent=2, default=str))
        return 0
    if prov.get("random_weights"):
        out.print(Panel(cell(prov.get("warning", "RANDOM BACKBONE WEIGHTS")), style="bold white on red"))
    rows = [("videos", summary["videos"]), ("capacity (rows)", summary["capacity"])]
    rows += [(f"status {k}", v) for k, v in sorted(summary["by_status"].items())]
    rows += [(f"label {k}", v) for k, v in sorted(summary["by_label"].items())]
    rows += [(f"split/label {k}", v) for k, v in sorted(summary["by_split_label"].items())]
    rows += [("face coverage", f"{summary['face_coverage']:.1%} of {summary['frames_sampled']} sampled frames"),
             ("videos without a face", summary["videos_without_face"]),
             ("file size", f"{summary['bytes'] / 1e6:.1f} MB"), ("last update", summary["updated"])]
    out.print(kv_table(f"feature store {args.store}", rows))
    det = prov.get("detector", {})
    engine = {**prov.get("backbone_engine", {}), **prov.get("backbone_numerics", {})}
    prov_rows = [("schema", prov.get("schema_version")), ("backbone", prov.get("backbone")),
                 ("weights", f"{prov.get('weights')} (sha256 {str(prov.get('weights_sha256'))[:16]}...)"),
                 ("frames (T)", prov.get("frames")), ("crop", prov.get("crop")), ("margin", prov.get("margin")),
                 ("detector", ", ".join(f"{k}={v}" for k, v in det.items()) if isinstance(det, dict) else det),
                 ("sampling", prov.get("sampling")),
                 ("perturbation", _perturbation(prov)),
                 ("engine", ", ".join(f"{k}={v}" for k, v in engine.items() if k not in ("probe", "choice"))),
                 ("created", prov.get("created")), ("manifest sha256", str(prov.get("manifest_sha256", ""))[:16]),
                 ("versions", ", ".join(f"{k} {v}" for k, v in prov.get("versions", {}).items()))]
    out.print(kv_table("provenance", prov_rows))
    if failed:
        out.print(kv_table("failed videos", [(r.video_id, r.reason) for r in failed]))
    return 0

"""onnxruntime against torch on this CPU, for the backbone and for the heads, on the graphs ``export`` writes.

    .venv/bin/python bench/onnx_vs_torch.py [--quick] [--repeat 5]

Backbone: ResNet50 (random weights: the FLOPs of ImageNet's) on batches of face crops, torch through
``stages.backbone.Embedder`` (channels_last; fp32, and the precision ``auto`` picks on this machine) against
the exported fp32 graph in onnxruntime with as many threads as torch. Heads: the default ensemble's members
(random weights) on batches of T=16-frame sequences, torch's ``member_outputs`` against the exported graph
(the unrolled, masked recurrence). Best of ``--repeat`` runs each; figures to bench/results/onnx.json.
(Not named onnx.py: run as a script, that name would shadow the onnx package.)
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import best_of, save  # noqa: E402
from ensembles.ensemble import DEFAULT_MEMBERS, build_member, member_outputs  # noqa: E402
from pipeline.bundle import OnnxMember, session  # noqa: E402
from pipeline.export import check_inputs, export_backbone, export_member  # noqa: E402
from stages.backbone import FEATURE_DIM, Embedder, capability_precision  # noqa: E402


def backbone(crop: int, batch: int, repeat: int, tmp: Path) -> dict:
    torch_fp32 = Embedder("random", "cpu", "fp32", batch_size=batch, crop=crop)
    auto, why = capability_precision(torch.device("cpu"))
    path, err = export_backbone(torch_fp32.model, crop, tmp / f"backbone{crop}.onnx")
    ort = session(path, torch.get_num_threads())
    crops = np.random.default_rng(0).integers(0, 256, (batch, crop, crop, 3), dtype=np.uint8)
    times = {"torch fp32": best_of(lambda: torch_fp32.embed(crops), repeat),
             "onnxruntime fp32": best_of(lambda: ort.run(None, {"crops": crops}), repeat)}
    if auto != "fp32":
        torch_auto = Embedder("random", "cpu", auto, batch_size=batch, crop=crop)
        times[f"torch {auto} (auto)"] = best_of(lambda: torch_auto.embed(crops), repeat)
    return {"crop": crop, "batch": batch, "auto_precision": auto, "why": why, "max_rel_diff": err,
            "images_per_s": {k: round(batch / v, 1) for k, v in times.items()},
            "onnx_speedup_vs_torch_fp32": round(times["torch fp32"] / times["onnxruntime fp32"], 2)}


def heads(members, batch: int, repeat: int, tmp: Path, T: int = 16) -> list[dict]:
    feats, _ = check_inputs(T)
    rows = np.resize(feats, (batch, T, FEATURE_DIM))
    mask = np.ones((batch, T), bool)
    mask[::3, T // 2:] = False                    # some short videos, as real batches have
    out = []
    for spec in members:
        torch.manual_seed(spec.seed)
        member = build_member(spec, FEATURE_DIM).eval()
        t0 = time.perf_counter()
        path, err = export_member(member, T, tmp / f"{spec.name}.onnx")
        export_s = time.perf_counter() - t0
        ort = OnnxMember(path, torch.get_num_threads())
        t_torch = best_of(lambda: member_outputs(member, rows, mask), repeat)
        t_ort = best_of(lambda: ort.logits(rows, mask), repeat)
        t_torch1 = best_of(lambda: member_outputs(member, rows[:1], mask[:1]), repeat)
        t_ort1 = best_of(lambda: ort.logits(rows[:1], mask[:1]), repeat)
        out.append({"member": spec.name, "head": spec.head, "batch": batch, "frames": T,
                    "max_prob_diff": err, "export_s": round(export_s, 1),
                    "videos_per_s": {"torch": round(batch / t_torch, 1), "onnxruntime": round(batch / t_ort, 1)},
                    "ms_one_video": {"torch": round(1e3 * t_torch1, 2), "onnxruntime": round(1e3 * t_ort1, 2)},
                    "onnx_speedup": round(t_torch / t_ort, 2), "onnx_speedup_one_video": round(t_torch1 / t_ort1, 2)})
        print(f"  {spec.name:16s} batch {batch}: torch {batch / t_torch:7.1f} videos/s, onnxruntime "
              f"{batch / t_ort:7.1f} ({t_torch / t_ort:.2f}x); one video: torch {1e3 * t_torch1:.1f} ms, "
              f"onnxruntime {1e3 * t_ort1:.1f} ms", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="112 px crops only, two members")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    crops = (112,) if args.quick else (112, 224)
    members = [m for m in DEFAULT_MEMBERS if m.name in ("bilstm-attn-512", "lstm")] if args.quick else DEFAULT_MEMBERS
    with tempfile.TemporaryDirectory(prefix="bench-onnx-") as tmp:
        bb = []
        for crop in crops:
            res = backbone(crop, 16, args.repeat, Path(tmp))
            bb.append(res)
            print(f"backbone {crop} px, batch 16: " + ", ".join(f"{k} {v} img/s" for k, v in res["images_per_s"].items())
                  + f"; onnxruntime / torch fp32 {res['onnx_speedup_vs_torch_fp32']}x", flush=True)
        print("heads (T=16, 2048-d):", flush=True)
        hd = heads(members, 16, args.repeat, Path(tmp))
    import onnxruntime
    print(f"results: {save('onnx', {'threads': torch.get_num_threads(), 'onnxruntime': onnxruntime.__version__, 'backbone': bb, 'heads': hd})}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

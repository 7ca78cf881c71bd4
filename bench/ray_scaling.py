"""Local vs Ray engine on the same dev clips (the Ray path's overhead on one machine), the per-stage costs in
core-seconds per video, the single writer's ceiling, and the throughput they imply on N nodes (on paper).

    .venv/bin/python bench/ray_scaling.py [--quick] [--frames 16] [--crop 224]

Both engines run as a user runs them (``python -m pipeline features``, random ResNet50 weights: the same
FLOPs as ImageNet's); this process itself never imports Ray.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import CLIPS, save  # noqa: E402
from features.store import FeatureStore  # noqa: E402
from features.writer import StoreWriter, VideoResult  # noqa: E402
from pipeline.core.videos import VideoEntry  # noqa: E402
from stages.faces import FaceConfig  # noqa: E402
from stages.preprocess import FeatureConfig, FramePipeline  # noqa: E402

QUICK = ("real/dfdc_lynaeydofd.mp4", "real/ffpp_youtube_634.mp4", "real/cyshih704_real.mp4",
         "fake/cyshih704_fake.mp4")   # the 1080p, 720p and 480p target clips, and a fake (folder layout)
DFDC_VIDEOS = 120_000
DFDC_CLIP = "real/dfdc_lynaeydofd.mp4"   # a 1080p, 10 s DFDC clip: the projection's cost per DFDC video
STAGES = ("decode", "detect_crop", "embed")
# name -> (extra options, extra environment). Ray runs each worker with one torch thread (OMP_NUM_THREADS=1
# for a 1-CPU task or actor), so "local_1thread" is the local engine under the same setting: ray against it
# is the Ray path's own overhead; ray against "local" is what a user sees.
ENGINES = {"local": ([], {}), "local_1thread": ([], {"OMP_NUM_THREADS": "1"}),
           "ray": (["--engine", "ray", "--ray-cpus", "CPUS", "--ray-object-store-mb", "500"], {})}


def dataset(folder: Path, quick: bool) -> Path:
    """A folder dataset of symlinks to the dev clips."""
    names = QUICK if quick else sorted(str(p.relative_to(CLIPS)) for p in CLIPS.glob("*/*.mp4"))
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).symlink_to(CLIPS / name)
    return folder


def run_engine(data: Path, store: Path, args, extra: list[str], env_extra: dict) -> dict:
    cmd = [sys.executable, "-m", "pipeline", "features", str(data), "--store", str(store), "--dataset", "folder",
           "--weights", "random", "--frames", str(args.frames), "--crop", str(args.crop), "--json", *extra]
    env = {**os.environ, "RAY_TMPDIR": str(store.parent), **env_extra}   # Ray's session files: temp folder
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stderr[-3000:]}")
    out = json.loads(res.stdout)
    n = out["done"] + sum(out["failed"].values())
    return {"command": " ".join(["python -m pipeline", *cmd[3:]]), "videos": n, "wall_s": round(wall, 2),
            "extract_s": round(out["seconds"], 2), "s_per_video": round(out["seconds"] / max(n, 1), 3),
            "ray": out.get("ray")}


def same_store(a: Path, b: Path) -> dict:
    """Same ids, statuses and masks; features within one fp16 step at each frame vector's scale."""
    with FeatureStore.open(a) as sa, FeatureStore.open(b) as sb:
        ra = {r.video_id: (r.status, r.reason) for r in sa.records()}
        rb = {r.video_id: (r.status, r.reason) for r in sb.records()}
        ids = sorted(ra)
        fa, ma = sa.load(ids)
        fb, mb = sb.load(ids) if set(rb) == set(ra) else (None, None)
    if fb is None:
        return {"same_ids": False}
    fa, fb = fa.astype(np.float32), fb.astype(np.float32)
    step = np.spacing(np.abs(fa).max(axis=2, keepdims=True).astype(np.float16)).astype(np.float32)
    return {"same_ids": True, "same_status": ra == rb, "same_masks": bool(np.array_equal(ma, mb)),
            "max_diff_in_fp16_steps": float((np.abs(fa - fb) / step).max())}


def cpu_seconds(fn):
    """(result, wall s, core-seconds of this process and its finished children, e.g. ffmpeg)."""
    def used():
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
    c0, t0 = used(), time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0, used() - c0


def stage_costs(pipe: FramePipeline, clips: list[Path]) -> dict:
    """Wall and core-seconds of decode, detect+track+crop and the backbone, per clip and their mean."""
    per_clip = {}
    for i, path in enumerate([clips[0], *clips]):        # the first pass is a warm-up
        entry = VideoEntry(path.name, str(path), 0, "test", path.name)
        sampled, *dec = cpu_seconds(lambda: pipe.stage.decode(str(path)))
        prepared, *det = cpu_seconds(lambda: pipe.stage.prepare(entry, sampled))
        _, *emb = cpu_seconds(lambda: pipe.embed([prepared]))
        if i:
            info = sampled.info
            per_clip[str(path.relative_to(CLIPS))] = {
                "size": f"{info.width}x{info.height}", "crops": len(prepared.crops),
                **{k: {"wall_s": round(w, 3), "core_s": round(c, 3)}
                   for k, (w, c) in zip(STAGES, (dec, det, emb))}}
    mean = {k: {m: round(float(np.mean([c[k][m] for c in per_clip.values()])), 3) for m in ("wall_s", "core_s")}
            for k in STAGES}
    return {"mean": mean, "clips": per_clip}


def writer_ceiling(frames: int, tmp: Path) -> dict:
    """Videos/s the driver's single StoreWriter can commit (two fsyncs per commit), by commit size."""
    out = {}
    for batch in (4, 16):
        entries = [VideoEntry(f"v{i}", f"/x/v{i}.mp4", 0, "train", f"v{i}") for i in range(batch * 8)]
        store = tmp / f"w{batch}.h5"
        ident = {"frames": frames, "feature_dim": 2048, "bench": True}
        rng = np.random.default_rng(0)
        with StoreWriter(store, {"bench": True}, ident, entries) as w:
            t0 = time.perf_counter()
            for s in range(0, len(entries), batch):
                w.commit([VideoResult(e.video_id, e.path, 0, "train", e.group, "", 1,
                                      features=rng.standard_normal((frames, 2048)).astype(np.float16),
                                      mask=np.ones(frames, bool)) for e in entries[s:s + batch]])
            out[f"commit_{batch}"] = round(len(entries) / (time.perf_counter() - t0), 1)
    return out


def projection(costs: dict, ceiling: float, cores: int = 32) -> list[dict]:
    """On paper: CPU-only nodes of ``cores`` cores, assuming core-seconds per video stay as measured here."""
    per_video = sum(costs[k]["core_s"] for k in STAGES)
    node = cores / per_video
    rows = []
    for n in (1, 4, 16, 64):
        rate = min(n * node, ceiling)
        rows.append({"nodes": n, "cores_per_node": cores, "videos_per_s": round(rate, 1),
                     "writer_bound": n * node > ceiling, "dfdc_hours": round(DFDC_VIDEOS / rate / 3600, 1)})
    return rows


def gpu_node_decode_ceiling(costs: dict, cores: int = 32) -> float:
    """On paper: videos/s the CPUs of a GPU node can decode (its GPUs detect and embed, not measured here)."""
    return round(cores / costs["decode"]["core_s"], 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the three target clips and one fake only")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--crop", type=int, default=224)
    ap.add_argument("--repeat", type=int, default=0, help="runs per engine, best kept (default 1 quick, 2 full)")
    args = ap.parse_args()
    args.repeat = args.repeat or (1 if args.quick else 2)
    if importlib.util.find_spec("ray") is None:
        print("ray: not installed (pip install -e '.[ray]'): local vs ray skipped")
        return
    cpus = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="rb", dir="/tmp") as tmp:   # short: Ray's socket paths
        tmp = Path(tmp)
        data = dataset(tmp / "data", args.quick)
        load = [os.getloadavg()[0]]
        runs: dict[str, list[dict]] = {name: [] for name in ENGINES}
        for _ in range(args.repeat):   # alternated, best of: other load on a shared machine moves all
            for name, (extra, env) in ENGINES.items():
                store = tmp / f"{name}.h5"
                for old in tmp.glob(f"{name}.h5*"):
                    old.unlink()
                extra = [a.replace("CPUS", str(cpus)) for a in extra]
                runs[name].append(run_engine(data, store, args, extra, env))
        best = {k: min(v, key=lambda r: r["s_per_video"]) for k, v in runs.items()}
        ray = best["ray"]
        same = same_store(tmp / "local.h5", tmp / "ray.h5")
        # Per-stage costs with one torch thread, as each 1-CPU Ray task or actor runs: core-seconds then
        # count work, not OpenMP threads spinning while a shared machine's other load holds their partner.
        torch.set_num_threads(1)
        pipe = FramePipeline(FeatureConfig(frames=args.frames, crop=args.crop, weights="random"), FaceConfig())
        clips = sorted(p.resolve() for p in data.glob("*/*.mp4"))
        costs = stage_costs(pipe, clips)
        ceiling = writer_ceiling(args.frames, tmp)
        load.append(os.getloadavg()[0])
    basis = costs["clips"].get(DFDC_CLIP, costs["mean"])   # DFDC is 1080p: its clip, not the mean
    proj = projection(basis, ceiling["commit_4"])
    print(f"{len(clips)} clips, frames {args.frames}, crop {args.crop}, {cpus} CPUs, "
          f"backbone {pipe.embedder.precision}, load average {load[0]:.1f} before, {load[1]:.1f} after")
    print(f"{'engine':14s} {'s/video':>8s} {'extract s':>10s} {'wall s':>8s}")
    for name, r in best.items():
        print(f"{name:14s} {r['s_per_video']:8.3f} {r['extract_s']:10.2f} {r['wall_s']:8.2f}")
    ratios = {f"ray_over_{k}": {"per_video": round(ray["s_per_video"] / best[k]["s_per_video"], 3),
                                "wall": round(ray["wall_s"] / best[k]["wall_s"], 3)}
              for k in ("local", "local_1thread")}
    print(f"ratios: {ratios}; same store (local vs ray): {same}")
    for name, c in costs["clips"].items():
        print(f"{name:40s} {c['size']:>9s}", "  ".join(f"{k} {c[k]['core_s']:.2f}" for k in STAGES), "core-s")
    print(f"{'mean':50s}", "  ".join(f"{k} {costs['mean'][k]['core_s']:.2f}" for k in STAGES), "core-s")
    print("writer ceiling (videos/s):", ceiling)
    for row in proj:
        print("projection:", row)
    gpu_cap = gpu_node_decode_ceiling(basis)
    print(f"a 32-core GPU node decodes at most {gpu_cap} videos/s (its GPU side is not measured here)")
    payload = {"command": " ".join(["bench/ray_scaling.py", *sys.argv[1:]]), "frames": args.frames, "crop": args.crop,
               "repeat": args.repeat, "load_average": load, "clips": [str(c.relative_to(CLIPS)) for c in clips],
               "engines": best, "all_runs_s_per_video": {k: [r["s_per_video"] for r in v] for k, v in runs.items()},
               "ratios": ratios, "same_store_local_vs_ray": same,
               "stage_costs": costs, "stage_costs_torch_threads": 1, "writer_videos_per_s": ceiling,
               "projection_basis": DFDC_CLIP if DFDC_CLIP in costs["clips"] else "mean",
               "projection_cpu_nodes": proj, "gpu_node_32_cores_decode_ceiling": gpu_cap,
               "backbone": pipe.embedder.describe(), "detector": pipe.detector.describe()}
    print("saved", save("ray", payload))


if __name__ == "__main__":
    main()

"""The report's sections below the first screen, as render blocks (``document`` puts them in order)."""
from __future__ import annotations

import json

import numpy as np

from pipeline.report import render as r
from pipeline.report.fmt import num, role, with_ci
from pipeline.report.frames import FrameLevel
from pipeline.report.metrics import AT_THRESHOLD, LABELS, Evaluation
from pipeline.report.pairs import pval

SMALL_SPLIT = 30      # below this many videos, intervals are wide and tests have little power
MORE_FIGURES = ("training_curves", "roc_pr", "confusion", "calibration", "score_histograms")


def reader_warnings(ev: Evaluation, where: str | None = None) -> list[str]:
    """What a reader must know before trusting any number: one class, too few videos, no test split."""
    d = ev.data
    where = where or f"{d.split} split"
    out = []
    n, n_fake = len(d.labels), int(d.labels.sum())
    if n_fake in (0, n):
        only = "fake" if n_fake else "real"
        out.append(f"The {where} has only {only} videos ({n}). ROC AUC, average precision, EER, "
                   "DeLong's test and the ROC/PR curves are undefined and shown as n/a; accuracy, log loss, "
                   "Brier, McNemar and Wilcoxon are still computed.")
    if n < SMALL_SPLIT:
        out.append(f"Only {n} {d.split} videos ({n_fake} fake, {n - n_fake} real). With fewer than "
                   f"{SMALL_SPLIT} videos the confidence intervals are wide and the tests have little power: "
                   "'no significant difference' here mostly means 'too few videos to tell'.")
    if d.split == "val":
        out.append("This run has no test split, so every number is on the validation split, which also chose "
                   "the thresholds and each member's best epoch: the numbers are optimistic.")
    return out


def compact_table(ev: Evaluation, id: str = "") -> r.Table:
    """Per model: video-level AUC, AP, EER and accuracy at the validation threshold, each with its interval."""
    ci = lambda m, s: with_ci(ev.value(m, s), ev.ci(m, s))            # noqa: E731
    return r.Table(("model", "video AUC", "video AP", "video EER", "video accuracy @val threshold"),
                   tuple((m, ci(m, "roc_auc"), ci(m, "average_precision"), ci(m, "eer"), ci(m, "accuracy@val"))
                         for m in ev.data.models), id=id, compact=True)


def frame_table(fl: FrameLevel, ev: Evaluation) -> r.Table:
    """Frame-level metrics, with the same model's video-level AUC beside them (never in one column)."""
    rows = []
    for m in fl.models:
        ci = lambda s: with_ci(fl.point[m][s], fl.ci[m][s])           # noqa: E731
        video = with_ci(ev.value(m, "roc_auc"), ev.ci(m, "roc_auc")) if m in ev.data.models else "n/a"
        rows.append((m, ci("roc_auc"), ci("average_precision"), ci("eer"), str(fl.n_frames[m]), video))
    return r.Table(("model", "frame-level AUC", "frame-level AP", "frame-level EER", "frames", "video-level AUC"),
                   tuple(rows), compact=True)


def frame_blocks(res, none_text: str) -> list[r.Block]:
    blocks: list[r.Block] = [r.Heading(f"Frame-level metrics, {res.set.label}")]
    if res.frames is None:
        return blocks + [r.Para(none_text, bold=True)]
    return blocks + [
        r.Para("Frame-level: every sampled frame with a face is one score (its video's label), from the heads "
               "that score frames one by one. Intervals resample whole videos (groups), never frames. "
               "Frame-level AUC runs below video-level AUC for the same model (a video's score averages its "
               "frames' noise away): compare frame with frame, video with video."),
        frame_table(res.frames, res.ev)]


def cross_dataset_blocks(c, robustness_image) -> list[r.Block]:
    blocks: list[r.Block] = []
    if c.matrix:
        cols = c.matrix["columns"]
        blocks += [r.Heading("Cross-dataset: video-level ROC AUC per evaluation set"),
                   r.Para("Rows: models" + (" of each run" if c.compared else "") + "; columns: the sets of "
                          "videos they were scored on (own: the training store's held-out split). Cells: "
                          "video-level ROC AUC [95% bootstrap CI]. Each set is scored at the run's own "
                          "validation thresholds; nothing is re-tuned on the set."),
                   r.Table(("model", *cols), tuple((row["label"], *(with_ci(row["cells"][k]["value"],
                                                                              row["cells"][k]["ci"])
                                                             if k in row["cells"] else "-" for k in cols))
                                                   for row in c.matrix["rows"]))]
    if c.robustness:
        levels = sorted({q["level"] for q in c.robustness})
        curves = sorted({(q["model"], q["curve"]) for q in c.robustness})
        cell = {(q["model"], q["curve"], q["level"]): with_ci(q["value"], tuple(q["ci"])) for q in c.robustness}
        blocks += [r.Heading("Robustness: video-level ROC AUC under perturbations"),
                   r.Para("Perturbed copies of a store (features --perturb KIND:LEVEL: DeeperForensics-1.0 "
                          "levels 1 mild to 5 severe, applied to the decoded frames before face detection), "
                          "scored with the run. Level 0 is the same videos unperturbed.")]
        if robustness_image is not None:
            blocks.append(robustness_image)
        blocks.append(r.Table(("model", "perturbation", *(f"level {lv}" for lv in levels)),
                              tuple((m, curve, *(cell.get((m, curve, lv), "-") for lv in levels))
                                    for m, curve in curves)))
    return blocks


def comparison_table(rows: list[dict]) -> r.Table:
    return r.Table(
        ("pair", "AUC diff [95% CI]", "DeLong p (Holm)", "accuracy diff [95% CI]", "McNemar b / c",
         "McNemar p (Holm)", "mean log loss", "Wilcoxon p (Holm)"),
        tuple((f"{x['model_a']} vs {x['model_b']}",
               with_ci(x["auc_diff"], (x["auc_diff_ci_low"], x["auc_diff_ci_high"]), signed=True),
               f"{pval(x['delong_p'])} ({pval(x['delong_p_holm'])})",
               with_ci(x["accuracy_diff"], (x["accuracy_diff_ci_low"], x["accuracy_diff_ci_high"]), signed=True),
               f"{x['mcnemar_b']} / {x['mcnemar_c']} ({x['mcnemar_method']})",
               f"{pval(x['mcnemar_p'])} ({pval(x['mcnemar_p_holm'])})",
               f"{num(x['log_loss_a'])} vs {num(x['log_loss_b'])}",
               f"{pval(x['wilcoxon_p'])} ({pval(x['wilcoxon_p_holm'])})") for x in rows))


def comparison_blocks(ev: Evaluation, rows: list[dict], seeds: dict, image) -> list[r.Block]:
    d = ev.data
    unit = ("whole groups, so they also allow for videos that share an identity." if ev.resampling == "groups"
            else "videos.")
    blocks: list[r.Block] = [
        r.Heading(f"Comparisons: paired, video-level, {d.split} split"),
        r.Para(f"Every pair of models on the same {len(d.labels)} videos (better AUC first). DeLong's test "
               "for two correlated AUCs; McNemar on the correct/wrong decisions at each model's validation "
               "threshold (exact binomial when few videos are discordant, below --exact-below, default 25; "
               "chi-square with continuity correction otherwise); Wilcoxon signed-rank on per-video log "
               f"losses. p-values are Holm-adjusted within each test across all {len(rows)} pairs. Differences "
               "carry paired bootstrap 95% intervals, which are not adjusted for the number of pairs: an "
               "interval can exclude 0 while the Holm p stays above the significance level. DeLong treats "
               "videos as independent; the intervals resample " + unit)]
    if not rows:
        return blocks + [r.Para("Only one model: nothing to compare.")]
    if image is not None:
        blocks.append(image)
    blocks.append(r.Bullets(tuple(x["verdict"] for x in rows)))
    blocks.append(r.Details("Every paired test (table)", (comparison_table(rows), r.Para(
        "McNemar b = videos only the first model gets right, c = only the second.")), level=3))
    blocks.append(r.Heading("Across seeds", 3))
    if not seeds["available"]:
        return blocks + [r.Para(seeds["note"])]
    blocks.append(r.Table(("head", "seeds", f"{seeds['metric']} per seed", "mean", "sd"),
                          tuple((h, ", ".join(map(str, v["seeds"])), ", ".join(num(a) for a in v["auc"]),
                                 num(v["mean"]), num(v["sd"])) for h, v in seeds["heads"].items())))
    if seeds["tests"]:
        blocks.append(r.Table(("heads", "paired seeds", "median AUC diff", "Wilcoxon p (Holm)", "smallest possible p"),
                              tuple((f"{t['head_a']} vs {t['head_b']}", str(t["n"]), num(t["median_auc_diff"]),
                                     f"{pval(t['p'])} ({pval(t['p_holm'])})", num(t["min_possible_p"], 4))
                                    for t in seeds["tests"])))
    blocks += [r.Banner(w, "warning") for w in seeds["warnings"]]
    return blocks


def set_blocks(results, alpha: float) -> list[r.Block]:
    """A summary of every evaluation set, then each one (same metrics, intervals and tests) collapsed."""
    if not results:
        return []
    rows = []
    for x in results:
        v = x.set.meta.get("videos", {})
        ens = with_ci(x.ev.value("ensemble", "roc_auc"), x.ev.ci("ensemble", "roc_auc")) \
            if "ensemble" in x.ev.data.models else "n/a"
        rows.append((x.set.name, str(x.set.meta.get("store", {}).get("path", "?")), x.set.perturb or "-",
                     "/".join(x.set.key[1]), str(len(x.ev.data.labels)), str(int(x.ev.data.labels.sum())),
                     str(v.get("no_face", int(x.ev.data.no_face.sum()))), ens))
    blocks: list[r.Block] = [
        r.Heading("Evaluation sets"),
        r.Para("Stores scored with this run by `evaluate`: the same metrics, intervals and paired tests as the "
               "own split, each at the run's validation thresholds. Open a set for its numbers."),
        r.Table(("set", "store", "perturbation", "splits", "videos", "fake", "no face (0.5)", "ensemble video AUC"),
                tuple(rows))]
    for x in results:
        inner: list[r.Block] = [r.Para(x.headline, bold=True)]
        inner += [r.Banner(w, "warning") for w in reader_warnings(x.ev, x.set.label)]
        inner += [compact_table(x.ev)]
        if x.frames is not None:
            inner += [r.Para("Frame-level (one score per frame with a face; intervals resample videos):"),
                      frame_table(x.frames, x.ev)]
        if x.pairs:
            inner += [r.Bullets(tuple(p["verdict"] for p in x.pairs)), comparison_table(x.pairs)]
        blocks.append(r.Details(f"{x.set.label} ({len(x.ev.data.labels)} videos)", tuple(inner), level=3))
    return blocks


def run_comparison_blocks(rows: list[dict], compared: list[str]) -> list[r.Block]:
    if not compared:
        return []
    blocks: list[r.Block] = [
        r.Heading("Runs compared: paired tests between ensembles on the same videos"),
        r.Para(f"Runs: {', '.join(compared)}. On every set both runs were evaluated on (same videos, same "
               "labels), the ensembles are compared with the same paired tests as the models of one run, "
               "each at its own run's validation threshold. Holm's correction is within each set.")]
    if not rows:
        return blocks + [r.Para("No set holds the same videos for these runs: evaluate both on the same stores "
                                "(`evaluate RUN --store STORE` for each run).")]
    return blocks + [r.Bullets(tuple(f"{x['set']}: {x['verdict']}" for x in rows)), comparison_table(rows)]


def figure_blocks(images) -> list[r.Block]:
    blocks: list[r.Block] = [r.Heading("More figures")]
    for image in images:
        blocks += [r.Heading(image.alt, 3), image]
    return blocks


def detail_blocks(ev: Evaluation, members: list[dict]) -> list[r.Block]:
    d = ev.data
    head = ("model", "role", "ROC AUC", "avg precision", "EER", "log loss", "Brier",
            "accuracy @val", "balanced acc @val", "F1 fake @val", "kappa @val", "val threshold")
    rows = []
    for m in d.models:
        ci = lambda s: with_ci(ev.value(m, s), ev.ci(m, s))       # noqa: E731
        rows.append((m, role(m, members), ci("roc_auc"), ci("average_precision"), ci("eer"), ci("log_loss"),
                     ci("brier"), ci("accuracy@val"), ci("balanced_accuracy@val"), ci("f1_fake@val"),
                     ci("kappa@val"), f"{ev.thresholds[m]['val']:.3f} ({ev.threshold_source[m]})"))
    inner: list[r.Block] = [
        r.Para(f"Video-level, {d.split} split, {len(np.unique(d.groups))} groups. '@val': at the threshold chosen "
               "on the validation split; '@0.5': at 0.5."), r.Table(head, tuple(rows))]
    for m in d.models:
        inner += [r.Heading(f"{m}: all metrics (video-level, {d.split})", 3), _detail_table(ev, m)]
    return [r.Details(f"Metrics: video-level, {d.split} split, every metric per model", tuple(inner))]


def _detail_table(ev: Evaluation, model: str) -> r.Table:
    t = ev.thresholds[model]
    rows = [(LABELS[s] + " (threshold-free)", with_ci(ev.value(model, s), ev.ci(model, s)), "")
            for s in ("roc_auc", "average_precision", "eer", "log_loss", "brier")]
    rows += [(LABELS[s], with_ci(ev.value(model, f"{s}@0.5"), ev.ci(model, f"{s}@0.5")),
              with_ci(ev.value(model, f"{s}@val"), ev.ci(model, f"{s}@val"))) for s in AT_THRESHOLD]
    return r.Table(("metric", "at 0.5", f"at val threshold {t['val']:.3f}"), tuple(rows))


def _share(k: int, n: int) -> str:
    return f"{k} ({100 * k / n:.1f}%)" if n else str(k)


def provenance_blocks(prov: dict, options: dict) -> list[r.Block]:
    """Provenance, configs and versions: three collapsible sections."""
    s = prov["store"]
    weights = s.get("weights", "unknown") + (" (RANDOM: not pretrained)" if prov["random_weights"] else "")
    store_rows = [("store path", s.get("path", "?")), ("schema version", s.get("schema_version", "?")),
                  ("backbone", s.get("backbone", "?")), ("weights", weights),
                  ("weights sha256", s.get("weights_sha256") or "n/a"),
                  ("frames per video (T)", s.get("frames", "?")), ("face crop (px)", s.get("crop", "?")),
                  ("crop margin", s.get("margin", "?")), ("feature dim", s.get("feature_dim", "?")),
                  ("face detector", json.dumps(s.get("detector", {}), sort_keys=True)),
                  ("perturbation", s.get("perturb") or "none"),
                  ("manifest sha256", s.get("manifest_sha256") or "n/a"), ("store created", s.get("created", "?"))]
    sizes = prov["sizes"]
    inner: list[r.Block] = [
        r.Heading("Feature store (stage one)", 3),
        r.Table(("field", "value"), tuple((k, str(v)) for k, v in store_rows)),
        r.Heading("Dataset sizes and face coverage", 3),
        r.Table(("split", "real", "fake", "total", "no face found (scored 0.5)", "extraction failed"),
                tuple((z["split"], str(z["real"]), str(z["fake"]), str(z["real"] + z["fake"]),
                       _share(z["no_face"], z["real"] + z["fake"]),
                       "n/a" if z["failed"] is None else str(z["failed"])) for z in sizes)),
        r.Para(f"Counts from {prov['sizes_source']}. A video with no face in any sampled frame gets "
               "prob_fake = 0.5 from every model (as the DFDC winner and SBI do); a video is called "
               "fake when prob_fake >= threshold, so at 0.5 such videos count as fake.")]
    if prov["members"]:
        inner += [r.Heading("Members", 3),
                  r.Table(("name", "head", "seed", "options"),
                          tuple((m.get("name", "?"), str(m.get("head", "?")), str(m.get("seed", "?")),
                                 json.dumps(m.get("options", {}), sort_keys=True)) for m in prov["members"]))]
    inner += [r.Heading("Commands that reproduce this report", 3),
              r.Code("\n".join(f"# {stage}\n{cmd}" for stage, cmd in prov["commands"]))]
    configs: list[r.Block] = [r.Para("Report options: " + json.dumps(options, sort_keys=True))]
    if s.get("config"):
        configs.append(r.Para("Feature store config, as recorded: " + json.dumps(s["config"], sort_keys=True)))
    if prov["train_config"]:
        configs.append(r.Para("Training config, as recorded: " + json.dumps(prov["train_config"], sort_keys=True)))
    v = prov["versions"]
    names = sorted(set(v["store"]) | set(v["training"]) | set(v["report"]))
    versions = r.Table(("package", "store (stage one)", "training", "this report"),
                       tuple((k, str(v["store"].get(k, "")), str(v["training"].get(k, "")),
                              str(v["report"].get(k, ""))) for k in names))
    return [r.Details("Provenance", tuple(inner)), r.Details("Configs", tuple(configs)),
            r.Details("Package versions", (versions,))]

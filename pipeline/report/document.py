"""What the report says, in reading order: verdict first, then provenance, metrics, comparisons, figures.

Builds render blocks from the computed results; knows nothing about Markdown or HTML.
"""
from __future__ import annotations

import json

import numpy as np

from pipeline.report import render as r
from pipeline.report.metrics import AT_THRESHOLD, LABELS, Evaluation
from pipeline.report.pairs import pval

SMALL_SPLIT = 30      # below this many videos, intervals are wide and tests have little power
FRAME_LEVEL = ("frame-level: not available for these heads (predictions.csv holds one score per video; "
               "the run folder has no per-frame scores)")


def num(v: float, digits: int = 3) -> str:
    return "n/a" if v is None or np.isnan(v) else f"{v:.{digits}f}"


def with_ci(v: float, ci: tuple[float, float], digits: int = 3, signed: bool = False) -> str:
    """A value with its interval, "0.912 [0.850, 0.960]"; signed for differences ("+0.031 [-0.010, +0.070]")."""
    f = f"{'+' if signed else ''}.{digits}f"
    if np.isnan(v):
        return "n/a"
    if any(np.isnan(c) for c in ci):
        return f"{v:{f}} [CI n/a]"
    return f"{v:{f}} [{ci[0]:{f}}, {ci[1]:{f}}]"


def role(model: str, members: list[dict]) -> str:
    if model == "ensemble":
        return "ensemble (mean of member softmax)"
    head = next((m.get("head") for m in members if m.get("name") == model), None)
    if model == "meanpool" or head == "meanpool":
        return "baseline: meanpool" + ("" if head else " (not a member in run.json)")
    return f"member ({head})" if head else "not a member in run.json"


def reader_warnings(ev: Evaluation) -> list[str]:
    """What a reader must know before trusting any number: one class, too few videos, no test split."""
    d = ev.data
    out = []
    n, n_fake = len(d.labels), int(d.labels.sum())
    if n_fake in (0, n):
        only = "fake" if n_fake else "real"
        out.append(f"The {d.split} split has only {only} videos ({n}). ROC AUC, average precision, EER, "
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


def provenance_blocks(prov: dict) -> list[r.Block]:
    s = prov["store"]
    weights = s.get("weights", "unknown")
    if prov["random_weights"]:
        weights = f"{weights} (RANDOM: not pretrained)"
    store_rows = [("store path", s.get("path", "?")), ("schema version", s.get("schema_version", "?")),
                  ("backbone", s.get("backbone", "?")), ("weights", weights),
                  ("weights sha256", s.get("weights_sha256") or "n/a"),
                  ("frames per video (T)", s.get("frames", "?")), ("face crop (px)", s.get("crop", "?")),
                  ("crop margin", s.get("margin", "?")), ("feature dim", s.get("feature_dim", "?")),
                  ("face detector", json.dumps(s.get("detector", {}), sort_keys=True)),
                  ("manifest sha256", s.get("manifest_sha256") or "n/a"), ("store created", s.get("created", "?"))]
    blocks: list[r.Block] = [r.Heading("Provenance"), r.Heading("Feature store (stage one)", 3),
                             r.Table(("field", "value"), tuple((k, str(v)) for k, v in store_rows))]
    sizes = prov["sizes"]
    blocks += [r.Heading("Dataset sizes and face coverage", 3),
               r.Table(("split", "real", "fake", "total", "no face found (scored 0.5)", "extraction failed"),
                       tuple((z["split"], str(z["real"]), str(z["fake"]), str(z["real"] + z["fake"]),
                              _share(z["no_face"], z["real"] + z["fake"]),
                              "n/a" if z["failed"] is None else str(z["failed"])) for z in sizes)),
               r.Para(f"Counts from {prov['sizes_source']}. A video with no face in any sampled frame gets "
                      "prob_fake = 0.5 from every model (as the DFDC winner and SBI do); a video is called "
                      "fake when prob_fake >= threshold, so at 0.5 such videos count as fake.")]
    members = prov["members"]
    if members:
        blocks += [r.Heading("Members", 3),
                   r.Table(("name", "head", "seed", "options"),
                           tuple((m.get("name", "?"), str(m.get("head", "?")), str(m.get("seed", "?")),
                                  json.dumps(m.get("options", {}), sort_keys=True)) for m in members))]
    v = prov["versions"]
    names = sorted(set(v["store"]) | set(v["training"]) | set(v["report"]))
    blocks += [r.Heading("Package versions", 3),
               r.Table(("package", "store (stage one)", "training", "this report"),
                       tuple((k, str(v["store"].get(k, "")), str(v["training"].get(k, "")),
                              str(v["report"].get(k, ""))) for k in names)),
               r.Heading("Commands that reproduce this report", 3),
               r.Code("\n".join(f"# {stage}\n{cmd}" for stage, cmd in prov["commands"]))]
    if s.get("config"):
        blocks.append(r.Para("Feature store config, as recorded: " + json.dumps(s["config"], sort_keys=True)))
    if prov["train_config"]:
        blocks.append(r.Para("Training config, as recorded: " + json.dumps(prov["train_config"], sort_keys=True)))
    return blocks


def _share(k: int, n: int) -> str:
    return f"{k} ({100 * k / n:.1f}%)" if n else str(k)


def metric_blocks(ev: Evaluation, members: list[dict], n_boot: int) -> list[r.Block]:
    d = ev.data
    head = ("model", "role", "ROC AUC", "avg precision", "EER", "log loss", "Brier",
            "accuracy @val", "balanced acc @val", "F1 fake @val", "kappa @val", "val threshold")
    rows = []
    for m in d.models:
        ci = lambda s: with_ci(ev.value(m, s), ev.ci(m, s))       # noqa: E731
        rows.append((m, role(m, members), ci("roc_auc"), ci("average_precision"), ci("eer"), ci("log_loss"),
                     ci("brier"), ci("accuracy@val"), ci("balanced_accuracy@val"), ci("f1_fake@val"),
                     ci("kappa@val"), f"{ev.thresholds[m]['val']:.3f} ({ev.threshold_source[m]})"))
    n_groups = len(np.unique(d.groups))
    blocks: list[r.Block] = [
        r.Heading(f"Metrics: video-level, {d.split} split"),
        r.Para(f"Every number in this section is video-level (one prob_fake per video) on the {d.split} split: "
               f"{len(d.labels)} videos, {int(d.labels.sum())} fake, {int((d.labels == 0).sum())} real, "
               f"{n_groups} groups. Brackets are 95% percentile bootstrap intervals from {n_boot} resamples of "
               f"{'whole groups (identities)' if ev.resampling == 'groups' else 'videos'}. '@val' means at the "
               "threshold chosen on the validation split; '@0.5' at 0.5 (see the per-model tables)."),
        r.Para(FRAME_LEVEL, bold=True),
        r.Table(head, tuple(rows))]
    for m in d.models:
        blocks += [r.Heading(f"{m}: all metrics (video-level, {d.split})", 3), _detail_table(ev, m)]
    return blocks


def _detail_table(ev: Evaluation, model: str) -> r.Table:
    t = ev.thresholds[model]
    rows = [(LABELS[s] + " (threshold-free)", with_ci(ev.value(model, s), ev.ci(model, s)), "")
            for s in ("roc_auc", "average_precision", "eer", "log_loss", "brier")]
    rows += [(LABELS[s], with_ci(ev.value(model, f"{s}@0.5"), ev.ci(model, f"{s}@0.5")),
              with_ci(ev.value(model, f"{s}@val"), ev.ci(model, f"{s}@val"))) for s in AT_THRESHOLD]
    return r.Table(("metric", "at 0.5", f"at val threshold {t['val']:.3f}"), tuple(rows))


def comparison_blocks(ev: Evaluation, rows: list[dict], seeds: dict) -> list[r.Block]:
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
    blocks.append(r.Bullets(tuple(x["verdict"] for x in rows)))
    blocks.append(r.Table(
        ("pair", "AUC diff [95% CI]", "DeLong p (Holm)", "accuracy diff [95% CI]", "McNemar b / c",
         "McNemar p (Holm)", "mean log loss", "Wilcoxon p (Holm)"),
        tuple((f"{x['model_a']} vs {x['model_b']}",
               with_ci(x["auc_diff"], (x["auc_diff_ci_low"], x["auc_diff_ci_high"]), signed=True),
               f"{pval(x['delong_p'])} ({pval(x['delong_p_holm'])})",
               with_ci(x["accuracy_diff"], (x["accuracy_diff_ci_low"], x["accuracy_diff_ci_high"]), signed=True),
               f"{x['mcnemar_b']} / {x['mcnemar_c']} ({x['mcnemar_method']})",
               f"{pval(x['mcnemar_p'])} ({pval(x['mcnemar_p_holm'])})",
               f"{num(x['log_loss_a'])} vs {num(x['log_loss_b'])}",
               f"{pval(x['wilcoxon_p'])} ({pval(x['wilcoxon_p_holm'])})") for x in rows)))
    blocks.append(r.Para("McNemar b = videos only the first model gets right, c = only the second."))
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


def figure_blocks(figures: dict[str, tuple[str, str]]) -> list[r.Block]:
    blocks: list[r.Block] = [r.Heading("Figures")]
    for rel, (alt, caption) in figures.items():
        blocks += [r.Heading(alt, 3), r.Image(rel, alt, caption)]
    return blocks


def weights_banner(prov: dict) -> list[r.Block]:
    s = prov["store"]
    if prov["random_weights"] is True:
        return [r.Banner(f"RANDOM BACKBONE WEIGHTS. The {s.get('backbone', 'backbone')} that made these features "
                         "was never trained (pretrained weights could not be loaded when the store was built). "
                         "Every number below measures heads on random-projection features and says nothing "
                         "about what this detector can do with pretrained features.", "danger")]
    if prov["random_weights"] is None:
        return [r.Banner("The store does not record whether its backbone weights were pretrained.", "warning")]
    return []


def compose(title: str, headline: str, ev: Evaluation, prov: dict, rows: list[dict], seeds: dict,
            figures: dict[str, tuple[str, str]], outputs: list[tuple[str, str]], notes: list[str],
            n_boot: int) -> list[r.Block]:
    """The whole report in reading order."""
    d = ev.data
    s = prov["store"]
    blocks: list[r.Block] = [r.Heading(title, 1), *weights_banner(prov), r.Para(headline, bold=True),
                             r.Para(f"Split: {d.split}. Level: video. Store: {s.get('path', '?')} "
                                    f"(schema {s.get('schema_version', '?')}, {s.get('frames', '?')} frames, "
                                    f"crop {s.get('crop', '?')} px). {FRAME_LEVEL}.")]
    blocks += [r.Banner(w, "warning") for w in reader_warnings(ev)]
    blocks += [r.Banner(n, "note") for n in notes]
    blocks += provenance_blocks(prov)
    blocks += metric_blocks(ev, prov["members"], n_boot)
    blocks += comparison_blocks(ev, rows, seeds)
    blocks += figure_blocks(figures)
    blocks += [r.Heading("Files"), r.Table(("file", "what"), tuple(outputs))]
    return blocks

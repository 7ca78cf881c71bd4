"""What the report says, in reading order: the answer first, then the evidence, then how it was made.

The first screen: the headline sentence, one compact table (per model: video-level AUC, AP, EER and
accuracy at the validation threshold, each with its interval), the ROC figure and, when the run was
evaluated on other sets, the cross-dataset matrix. Below it: what a reader must know (warnings), the
cross-dataset and robustness results, frame-level metrics, the pairwise comparisons (a matrix figure, the
verdicts, the full table), each evaluation set, runs compared, the other figures; per-model tables,
provenance, configs and versions sit in collapsible sections. Builds render blocks from computed results;
knows nothing about Markdown or HTML.
"""
from __future__ import annotations

from dataclasses import dataclass

from pipeline.report import render as r
from pipeline.report import sections
from pipeline.report.fmt import role, with_ci  # noqa: F401  (role: for metrics.json, see pipeline.report)
from pipeline.report.sections import compact_table, reader_warnings
from pipeline.report.sets import SetResult

FRAME_LEVEL = ("frame-level: not available for these heads (the run folder holds no per-frame scores: only "
               "heads that score single frames, meanpool and framelinear, write them, from this version on)")


def weights_banner(prov: dict) -> list[r.Block]:
    s = prov["store"]
    if prov["random_weights"] is True:
        return [r.Banner(f"RANDOM BACKBONE WEIGHTS: the {s.get('backbone', 'backbone')} behind these features was "
                         "never trained, so every number measures the pipeline, not what this detector can do "
                         "with pretrained features.", "danger")]
    if prov["random_weights"] is None:
        return [r.Banner("The store does not record whether its backbone weights were pretrained.", "warning")]
    return []


@dataclass(frozen=True)
class Content:
    """Everything the report shows, computed (``pipeline.report.run`` fills it)."""
    title: str
    primary: SetResult                   # the run's own test (or val) split
    sets: list[SetResult]                # the evaluation sets
    prov: dict
    seeds: dict
    figures: dict[str, tuple[str, str, str]]   # key -> (relative path, title, caption), drawn ones only
    outputs: list[tuple[str, str]]
    notes: list[str]
    n_boot: int
    alpha: float
    matrix: dict | None                  # sets.cross_dataset
    robustness: list[dict]               # sets.robustness points
    run_pairs: list[dict]                # paired tests between runs (--compare)
    compared: list[str]                  # labels of the runs compared
    options: dict                        # the resolved report options


def _image(c: Content, key: str, id: str = "") -> r.Image | None:
    if key not in c.figures:
        return None
    rel, title, caption = c.figures[key]
    return r.Image(rel, title, caption, id=id)


def _meta_line(c: Content) -> str:
    ev, s = c.primary.ev, c.primary.set
    d = ev.data
    unit = "groups (identities)" if ev.resampling == "groups" else "videos"
    text = (f"{s.label[0].upper() + s.label[1:]}: {len(d.labels)} videos ({int(d.labels.sum())} fake, "
            f"{int((d.labels == 0).sum())} real). Every number on this screen is video-level (one score per "
            f"video); brackets are 95% bootstrap intervals over {unit}, {c.n_boot} resamples; accuracy is at "
            "each model's threshold chosen on validation.")
    clean = [x for x in c.sets if x.set.kind == "clean" and "ensemble" in x.ev.data.models][:4]
    if clean:
        text += " Ensemble on other sets: " + "; ".join(
            f"{x.set.short} {with_ci(x.ev.value('ensemble', 'roc_auc'), x.ev.ci('ensemble', 'roc_auc'))}"
            for x in clean) + "."
    return text


def first_screen(c: Content) -> list[r.Block]:
    blocks: list[r.Block] = [r.Heading(c.title, 1), *weights_banner(c.prov),
                             r.Para(c.primary.headline, bold=True, id="headline"),
                             r.Para(_meta_line(c), small=True),
                             compact_table(c.primary.ev, id="summary")]
    images = [i for i in (_image(c, "roc", "roc"), _image(c, "matrix", "matrix")) if i is not None]
    if images:
        blocks.append(r.Figures(tuple(images)))
    return blocks


def compose(c: Content) -> list[r.Block]:
    """The whole report in reading order."""
    ev = c.primary.ev
    blocks = first_screen(c)
    blocks += [r.Banner(w, "warning") for w in reader_warnings(ev, f"{ev.data.split} split")]
    blocks += [r.Banner(n, "note") for n in c.notes]
    blocks += sections.cross_dataset_blocks(c, _image(c, "robustness", "robustness"))
    blocks += sections.frame_blocks(c.primary, FRAME_LEVEL)
    blocks += sections.comparison_blocks(ev, c.primary.pairs, c.seeds, _image(c, "pairwise", "pairwise"))
    blocks += sections.set_blocks(c.sets, c.alpha)
    blocks += sections.run_comparison_blocks(c.run_pairs, c.compared)
    blocks += sections.figure_blocks([i for i in (_image(c, k) for k in sections.MORE_FIGURES) if i is not None])
    blocks += sections.detail_blocks(ev, c.prov["members"])
    blocks += sections.provenance_blocks(c.prov, c.options)
    blocks += [r.Heading("Files"), r.Table(("file", "what"), tuple(c.outputs))]
    return blocks

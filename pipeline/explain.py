"""Explanations a person can look at: Grad-CAM on each face crop for the ensemble's fake score, and the
attention heads' weight per frame, with the verdict, in one PNG per video.

Grad-CAM (Selvaraju et al., ICCV 2017, https://arxiv.org/abs/1610.02391) on ResNet50's last block: the
gradient of the ensemble's probability of fake with respect to ``layer4``'s activations, averaged over space,
weights those activations; the positive part of the weighted sum is the heatmap.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ensembles.ensemble import Ensemble
from features.writer import VideoResult
from pipeline.core.atomic import write_bytes


def gradcam(res: VideoResult, pipe, ensemble: Ensemble, for_fake: bool = True) -> np.ndarray:
    """(K, C, C) heatmaps in [0, 1], one per valid frame's crop: Grad-CAM for the verdict's class (the
    ensemble's fake score, or its real score 1 - p when ``for_fake`` is False). Where a crop has no positive
    evidence for that class at all, its map shows the magnitude of the signed map instead."""
    model = pipe.embedder.model
    acts: list[torch.Tensor] = []
    hook = model.layer4.register_forward_hook(lambda _m, _i, out: acts.append(out))
    mask = torch.as_tensor(res.mask)[None].to(pipe.embedder.device)             # (1, T)
    try:
        # cuDNN RNNs cannot run backward in eval mode; the plain kernels can (same numbers).
        with torch.enable_grad(), torch.backends.cudnn.flags(enabled=False):
            x = pipe.embedder.preprocess(res.crops)                             # (K, 3, C, C)
            feats = model(x)                                                    # (K, 2048)
            seq = torch.zeros(1, mask.shape[1], feats.shape[1], device=feats.device)
            seq = seq.index_put((torch.zeros(int(mask.sum()), dtype=torch.long, device=feats.device),
                                 torch.nonzero(mask[0]).squeeze(1)), feats)    # (1, T, 2048)
            probs = [ensemble.members[n](seq, mask).softmax(-1)[:, 1] for n in ensemble.in_ensemble]
            score = torch.stack(probs).mean()
            act = acts[-1]                                                      # (K, 2048, h, w)
            grad, = torch.autograd.grad(score, act)
    finally:
        hook.remove()
    weights = grad.mean(dim=(2, 3), keepdim=True)                               # (K, 2048, 1, 1)
    signed = (weights * act).sum(1, keepdim=True) * (1 if for_fake else -1)     # (K, 1, h, w)
    cam = F.relu(signed)
    empty = cam.amax(dim=(1, 2, 3)) <= 0                                        # (K,) no positive evidence
    cam[empty] = signed[empty].abs()
    cam = F.interpolate(cam, size=res.crops.shape[1:3], mode="bilinear", align_corners=False)[:, 0]
    cam = cam - cam.amin(dim=(1, 2), keepdim=True)
    cam = cam / cam.amax(dim=(1, 2), keepdim=True).clamp_min(1e-12)
    return cam.detach().float().cpu().numpy()


def attention_weights(res: VideoResult, ensemble: Ensemble) -> dict[str, np.ndarray]:
    """{attention member: (T,) weights} for this video."""
    att = ensemble.attention(res.features[None].astype(np.float32), res.mask[None])
    return {k: v[0] for k, v in att.items()}


def explain_video(res: VideoResult, pred, pipe, ensemble: Ensemble, out_dir: Path) -> tuple[Path, np.ndarray, dict]:
    """Write OUT/<video>.png and return (path, heatmaps (K, C, C), attention {member: (T,)})."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cams = gradcam(res, pipe, ensemble, for_fake=pred.label == "fake")
    att = attention_weights(res, ensemble)
    frames_t = np.flatnonzero(res.mask)                                         # (K,) frame slots with a crop
    k = len(frames_t)
    fig = plt.figure(figsize=(max(6.0, 1.6 * k), 4.6), constrained_layout=True)
    grid = fig.add_gridspec(2, k, height_ratios=[1.0, 0.7])
    for i in range(k):
        ax = fig.add_subplot(grid[0, i])
        ax.imshow(res.crops[i])
        ax.imshow(cams[i], cmap="jet", alpha=0.45, vmin=0, vmax=1)
        ax.set_title(f"frame {int(res.frame_index[frames_t[i]])}", fontsize=8)
        ax.axis("off")
    ax = fig.add_subplot(grid[1, :])
    T = len(res.mask)
    if att:
        width = 0.8 / len(att)
        for j, (name, w) in enumerate(sorted(att.items())):
            ax.bar(np.arange(T) + j * width - 0.4 + width / 2, w, width=width, label=name)
        ax.legend(fontsize=7, loc="upper right")
        ax.set_ylabel("attention")
    else:
        ax.text(0.5, 0.5, "no attention head in this run", ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks(range(T), [str(int(f)) if f >= 0 else "-" for f in res.frame_index], fontsize=7)
    ax.set_xlabel("sampled frame (index in video; '-' missing)")
    colour = "crimson" if pred.label == "fake" else "seagreen"
    # Two lines: on one, a long video id (the server's are 32 characters) ran past a 4-frame figure's edge.
    fig.suptitle(f"{pred.video_id}: {pred.label.upper()}  P(fake)={pred.prob_fake:.3f}\n"
                 f"faces in {res.mask.sum()}/{int((res.frame_index >= 0).sum())} frames  "
                 f"(Grad-CAM for '{pred.label}', ResNet50 layer4)", color=colour, fontsize=11, fontweight="bold")
    path = out_dir / (pred.video_id.replace("/", "__").rsplit(".", 1)[0] + ".png")
    buf = io.BytesIO()
    fig.savefig(buf, dpi=110, format="png")
    plt.close(fig)
    write_bytes(path, buf.getvalue())
    return path, cams, att

"""Every registered head: output shape, masks honoured, gradients, save/load; and the registry itself."""
from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from ensembles import registry
from ensembles.ensemble import Member
from ensembles.registry import HeadError, create_head, head_options, list_heads, parse_option, register_head

D, T = 12, 6
HEADS = list_heads()


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models: one thread is fastest, and immune to other jobs on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def small(name: str) -> nn.Module:
    """A tiny instance of any head: shrink whichever size options it has."""
    sizes = {"hidden": 6, "fc": 8, "attn_dim": 4}
    return create_head(name, in_dim=D, **{k: v for k, v in sizes.items() if k in head_options(name)})


def batch(seed: int = 0):
    """x (5, T, D) and a mask with every pattern: full, missing tail, holes, one frame, no frame at all."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(5, T, D, generator=g)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1],
                         [1, 1, 1, 1, 0, 0],
                         [0, 1, 0, 1, 1, 0],
                         [0, 0, 0, 1, 0, 0],
                         [0, 0, 0, 0, 0, 0]], dtype=torch.bool)
    return x, mask


def test_the_issue_heads_are_registered():
    assert {"lstm", "gru", "bilstm-attn", "bigru-attn", "meanpool", "framelinear"} <= set(HEADS)


@pytest.mark.parametrize("name", HEADS)
def test_output_shape_and_masked_padding_changes_nothing(name):
    torch.manual_seed(0)
    head = small(name).eval()
    x, mask = batch()
    out = head(x, mask)
    assert out.shape == (5, 2) and out.dtype == torch.float32
    # Garbage (huge values, NaN) in the masked slots, and three more masked slots at the end.
    junk = x.clone()
    junk[~mask] = torch.where(torch.rand(int((~mask).sum()), D) < 0.3, float("nan"), 1e4)
    longer = torch.cat([junk, torch.full((5, 3, D), 7.0)], 1)
    longer_mask = torch.cat([mask, torch.zeros(5, 3, dtype=torch.bool)], 1)
    with torch.no_grad():
        assert torch.allclose(head(junk, mask), out, atol=1e-6)
        assert torch.allclose(head(longer, longer_mask), out, atol=1e-6)
    # A video without a valid frame carries no evidence: probability exactly 0.5.
    assert torch.equal(out[4].softmax(-1), torch.tensor([0.5, 0.5]))
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", HEADS)
def test_gradients_reach_every_parameter_and_never_a_masked_frame(name):
    torch.manual_seed(0)
    head = small(name).train()
    for module in head.modules():             # dropout could silence a tiny head's few units by chance
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    x, mask = batch()
    x, mask = x[:4], mask[:4]                 # training never sees a video without frames
    x.requires_grad_(True)
    loss = nn.functional.cross_entropy(head(x, mask), torch.tensor([0, 1, 0, 1]))
    loss.backward()
    for pname, p in head.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, f"{pname} gets no gradient"
    assert x.grad[~mask].abs().max() == 0          # masked frames do not influence the loss at all
    assert (x.grad[mask].abs().sum(-1) > 0).all()  # every valid frame does


@pytest.mark.parametrize("name", HEADS)
def test_save_load_round_trip_gives_identical_outputs(name):
    x, mask = batch()
    torch.manual_seed(0)
    a = small(name).train()
    a(x[:4], mask[:4])                        # moves BatchNorm running statistics away from their init
    a.eval()
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    torch.manual_seed(1)
    b = small(name).eval()
    with torch.no_grad():
        assert not torch.equal(a(x, mask), b(x, mask))   # a fresh head differs, so the test can fail
        b.load_state_dict(torch.load(buf, weights_only=True))
        assert torch.equal(a(x, mask), b(x, mask))


@pytest.mark.parametrize("name", [h for h in HEADS if hasattr(small(h), "attention")])
def test_attention_weights_cover_valid_frames_only(name):
    torch.manual_seed(0)
    head = small(name).eval()
    x, mask = batch()
    with torch.no_grad():
        w = head.attention(x, mask)
    assert w.shape == (5, T)
    assert torch.all(w[~mask] == 0) and torch.all(w >= 0)
    assert torch.allclose(w[:4].sum(-1), torch.ones(4), atol=1e-6) and w[4].sum() == 0


@pytest.mark.parametrize("name", [h for h in HEADS if hasattr(small(h), "frame_logits")])
def test_frame_scores_are_the_heads_own_and_ignore_masked_frames(name):
    """Frame logits (B, T, 2): 0 on masked frames whatever they hold, and the video score is their pool:
    meanpool's logits are the mean of its frames' logits, framelinear's probability the mean of its frames'."""
    torch.manual_seed(0)
    head = small(name).eval()
    x, mask = batch()
    junk = x.clone()
    junk[~mask] = float("nan")
    with torch.no_grad():
        frames = head.frame_logits(junk, mask)
        video = head(junk, mask)
    assert frames.shape == (5, T, 2) and torch.isfinite(frames).all()
    assert torch.all(frames[~mask] == 0)
    n = mask.sum(1, keepdim=True).clamp_min(1)
    if name == "meanpool":
        pooled = frames.sum(1) / n                                      # (B, 2) mean of valid frames' logits
        assert torch.allclose(pooled[:4], video[:4], atol=1e-5)
    else:
        pooled = (frames.softmax(-1) * mask[..., None]).sum(1) / n      # (B, 2) mean of frame probabilities
        assert torch.allclose(pooled[:4], video[:4].softmax(-1), atol=1e-5)
    assert {"meanpool", "framelinear"} <= {h for h in HEADS if hasattr(small(h), "frame_logits")}


def test_member_standardises_inside_and_ignores_nan_padding():
    torch.manual_seed(0)
    member = Member(small("lstm"), D).eval()
    member.set_standardisation(torch.full((D,), 3.0), torch.full((D,), 2.0))
    x, mask = batch()
    raw = x * 2.0 + 3.0                        # what the store holds for features x after standardising
    junk = raw.clone()
    junk[~mask] = float("nan")
    with torch.no_grad():
        expected = member.head(torch.where(mask[..., None], x, 0.0), mask)
        assert torch.allclose(member(raw, mask), expected, atol=1e-5)
        assert torch.allclose(member(junk.half(), mask), member(raw.half(), mask))


def test_duplicate_name_is_an_error():
    with pytest.raises(ValueError, match="already registered"):
        register_head("lstm")(type("Another", (nn.Module,), {}))


def test_a_new_head_joins_the_registry(monkeypatch):
    monkeypatch.setattr(registry._HEADS, "_items", dict(registry._HEADS._items))   # keep the registry clean

    @register_head("tiny-test-head")
    class Tiny(nn.Module):
        def __init__(self, in_dim: int = 2048, scale: float = 1.0):
            super().__init__()
            self.fc, self.scale = nn.Linear(in_dim, 2), scale

    assert "tiny-test-head" in list_heads()
    assert create_head("tiny-test-head", in_dim=4, scale=None).scale == 1.0


def test_unknown_head_and_option_are_refused_with_the_choices():
    with pytest.raises(HeadError, match="known heads: .*lstm"):
        create_head("transformer-xl")
    with pytest.raises(HeadError, match="no option.*hiden.*hidden"):
        create_head("gru", hiden=3)


def test_none_options_keep_the_defaults_and_cli_values_are_typed():
    head = create_head("lstm", in_dim=D, hidden=None, dropout=None)
    assert head.rnn.hidden_size == head_options("lstm")["hidden"] and head.dropout.p == 0.5
    assert parse_option("bilstm-attn", "hidden", "64") == 64
    assert parse_option("lstm", "dropout", "0.25") == 0.25
    with pytest.raises(HeadError, match="cannot read"):
        parse_option("lstm", "hidden", "big")

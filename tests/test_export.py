"""export and predict --runtime onnx: the exported graphs compute what torch computes, masks included."""
from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import torch

from ensembles.ensemble import Member
from ensembles.heads.masked import compact, unrolled_rnn
from ensembles.registry import create_head, list_heads
from pipeline.export import check_inputs, export_member
from tests.conftest import cli

SMALL = {"lstm": {"hidden": 8}, "gru": {"hidden": 8}, "meanpool": {}, "framelinear": {},
         "bilstm-attn": {"hidden": 8, "attn_dim": 4, "fc": 8}, "bigru-attn": {"hidden": 8, "attn_dim": 4, "fc": 8}}
T, D = 6, 16


def _member(head: str, seed: int = 0) -> Member:
    torch.manual_seed(seed)
    member = Member(create_head(head, in_dim=D, **SMALL[head]), D)
    rng = np.random.default_rng(seed)
    member.set_standardisation(rng.normal(0.5, 0.1, D), rng.uniform(0.5, 1.5, D))
    for m in member.modules():                       # BatchNorm with non-trivial statistics, as after training
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 2)
    return member.eval()


def test_every_head_is_registered_here():
    assert sorted(SMALL) == list_heads()


def test_compact_is_the_stable_sort_of_the_mask():
    rng = np.random.default_rng(0)
    mask = torch.from_numpy(rng.random((64, 9)) > 0.5)
    order = compact(torch.zeros(64, 9, 1), mask)[2]
    _, ref = torch.sort((~mask).to(torch.uint8), dim=1, stable=True)
    assert torch.equal(order, ref)


@pytest.mark.parametrize("head", list_heads())
def test_the_unrolled_recurrence_equals_the_packed_one_on_masked_inputs(head):
    member = _member(head)
    feats, mask = map(torch.from_numpy, check_inputs(T, D))
    with torch.no_grad():
        packed = member(feats, mask)
        packed_att = member.attention(feats, mask)
        with unrolled_rnn():
            unrolled = member(feats, mask)
            unrolled_att = member.attention(feats, mask)
    assert torch.allclose(packed, unrolled, atol=1e-6), (packed - unrolled).abs().max()
    assert torch.equal(packed[4], torch.zeros(2)) and torch.equal(unrolled[4], torch.zeros(2))   # no frame: 0.5
    if packed_att is not None:
        assert torch.allclose(packed_att, unrolled_att, atol=1e-6)
        assert torch.all(unrolled_att[~mask] == 0)


@pytest.mark.parametrize("head", list_heads())
def test_every_head_exports_and_onnxruntime_honours_the_mask_exactly_as_torch(head, tmp_path):
    from pipeline.bundle import OnnxMember
    member = _member(head, seed=1)
    path, worst = export_member(member, T, tmp_path / f"{head}.onnx", dim=D)
    assert worst <= 1e-5
    feats, mask = check_inputs(T, D, seed=3)
    onnx = OnnxMember(path, 1)
    got = onnx.logits(feats, mask)
    with torch.no_grad():
        ref = member(torch.from_numpy(feats), torch.from_numpy(mask)).numpy()
    assert np.allclose(got, ref, atol=1e-5)
    garbage = feats.copy()
    garbage[~mask] = 1e3                              # what sits under a masked frame never counts
    assert np.array_equal(onnx.logits(garbage, mask), got)
    for n in (1, 2, 5):                               # the batch axis is dynamic
        assert np.allclose(onnx.logits(feats[:n], mask[:n]), got[:n], atol=1e-6)


@pytest.fixture(scope="module")
def bundle(trained_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "bundle"
    manifest = json.loads(cli("export", str(trained_run["run"]), str(out), "--json").stdout)
    return out, manifest


def test_the_manifest_names_the_runs_identity_members_threshold_and_checksums(bundle, trained_run):
    from pipeline.bundle import sha256_file
    out, manifest = bundle
    run = json.loads((trained_run["run"] / "run.json").read_text())
    assert manifest["store_identity"] == run["store_identity"] and manifest["threshold"] == run["threshold"]
    assert [m["name"] for m in manifest["members"]] == [m["name"] for m in run["members"]]
    assert manifest["backbone"]["random_weights"] is True and manifest["frames"] == 4 and manifest["crop"] == 112
    assert manifest["backbone"]["weights_sha256"] == run["store_identity"]["weights_sha256"]
    assert "inside the graph" in manifest["backbone"]["normalisation"]
    for entry in [manifest["backbone"], *manifest["members"]]:
        assert sha256_file(out / entry["file"]) == entry["sha256"] and (out / entry["file"]).stat().st_size > 1000
    assert json.loads((out / "manifest.json").read_text()) == manifest


def test_predict_with_onnxruntime_gives_the_torch_verdicts(bundle, trained_run):
    out, _ = bundle
    data, run = trained_run["data"], trained_run["run"]
    torch_out = json.loads(cli("predict", str(data), "--run", str(run), "--json").stdout)
    onnx_out = json.loads(cli("predict", str(data), "--run", str(out), "--runtime", "onnx", "--json").stdout)
    assert onnx_out["threshold"] == torch_out["threshold"]
    a = {v["video_id"]: v for v in torch_out["videos"]}
    b = {v["video_id"]: v for v in onnx_out["videos"]}
    test_videos = {r["video_id"] for r in csv.DictReader((run / "predictions.csv").open()) if r["split"] == "test"}
    assert test_videos and test_videos <= set(a) and set(a) == set(b)
    for vid in a:
        assert b[vid]["label"] == a[vid]["label"] and b[vid]["status"] == a[vid]["status"] == "ok"
        assert abs(b[vid]["prob_fake"] - a[vid]["prob_fake"]) <= 1e-4, vid
        for m, p in a[vid]["members"].items():
            assert abs(b[vid]["members"][m] - p) <= 1e-4, (vid, m)


def test_a_changed_bundle_file_or_a_run_folder_is_refused(bundle, trained_run, tmp_path):
    out, manifest = bundle
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    member = copy / manifest["members"][0]["file"]
    data = bytearray(member.read_bytes())
    data[-10] ^= 0xFF
    member.write_bytes(bytes(data))
    video = sorted((trained_run["data"] / "real").glob("*.mp4"))[0]
    res = cli("predict", str(video), "--run", str(copy), "--runtime", "onnx", check=False)
    assert res.returncode == 2 and "does not match its sha256" in res.stderr
    res = cli("predict", str(video), "--run", str(trained_run["run"]), "--runtime", "onnx", check=False)
    assert res.returncode == 2 and "not an ONNX bundle" in res.stderr and "export" in res.stderr
    res = cli("predict", str(video), "--run", str(out), "--runtime", "onnx", "--explain", str(tmp_path), check=False)
    assert res.returncode == 2 and "--runtime torch" in res.stderr

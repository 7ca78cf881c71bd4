"""stages.resnet is torchvision's ResNet50 without importing torchvision: same state dict, same seeded
initialisation, same outputs; and stage one never imports the torchvision package."""
from __future__ import annotations

import subprocess
import sys

import torch
import torchvision

from stages.backbone import IMAGENET_URL
from stages.resnet import ResNet50


def test_same_state_dict_initialisation_and_outputs_as_torchvision():
    torch.manual_seed(0)
    ours = ResNet50().eval()
    torch.manual_seed(0)
    theirs = torchvision.models.resnet50(weights=None).eval()
    a, b = ours.state_dict(), theirs.state_dict()
    assert list(a) == list(b)                                   # names and order: the ImageNet file loads
    assert all(torch.equal(a[k], b[k]) for k in b)              # bit for bit from the same seed
    other = {k: (torch.rand_like(v) + 0.5 if k.endswith("running_var") else torch.randn_like(v) * 0.05)
             if v.is_floating_point() else v for k, v in b.items()}
    theirs.load_state_dict(other)
    ours.load_state_dict(theirs.state_dict())                   # any weights: the same arithmetic
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        y = ours(x)
        assert torch.isfinite(y).all() and y.std() > 0 and torch.equal(y, theirs(x))


def test_the_imagenet_file_is_torchvisions():
    assert IMAGENET_URL == torchvision.models.ResNet50_Weights.IMAGENET1K_V2.url


def test_stage_one_does_not_import_torchvision():
    code = ("import sys, numpy as np\n"
            "from stages.preprocess import FeatureConfig, FramePipeline\n"
            "from stages.faces import FaceConfig\n"
            "pipe = FramePipeline(FeatureConfig(frames=2, crop=32, weights='random', batch_size=8), FaceConfig())\n"
            "pipe.stage.detector.detect(np.zeros((2, 64, 64, 3), np.uint8))\n"
            "pipe.embedder.embed(np.zeros((2, 32, 32, 3), np.uint8))\n"
            "print('torchvision' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _torchvision_state(seed: int = 3) -> dict:
    torch.manual_seed(seed)
    return torchvision.models.resnet50(weights=None).state_dict()


def test_a_weights_file_and_the_hub_cache_load_into_our_network(tmp_path, monkeypatch):
    import pytest

    from stages.backbone import WeightsError, imagenet_cache_path, load_resnet50
    state = _torchvision_state()
    ref = torchvision.models.resnet50(weights=None)
    ref.load_state_dict(state)
    ref.fc = torch.nn.Identity()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want = ref.eval()(x)
    path = tmp_path / "w.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)   # as training scripts save
    model, info = load_resnet50(str(path))
    assert info.name == "file:w.pt" and not info.random
    with torch.no_grad():
        assert torch.equal(model(x), want)                     # (N, 2048): the classifier is gone
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    with pytest.raises(WeightsError, match="resnet50-11ad3fa6.pth"):
        load_resnet50("imagenet", download=False)              # missing, offline: one clear message
    imagenet_cache_path().parent.mkdir(parents=True)
    torch.save(state, imagenet_cache_path())
    model, info = load_resnet50("imagenet", download=False)
    assert info.name == "imagenet:IMAGENET1K_V2" and not info.random
    with torch.no_grad():
        assert torch.equal(model(x), want)
    torch.save({"conv1.weight": torch.zeros(1)}, path)
    with pytest.raises(WeightsError, match="do not fit ResNet50"):
        load_resnet50(str(path))

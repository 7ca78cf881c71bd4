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

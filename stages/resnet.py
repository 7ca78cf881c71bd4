"""ResNet50 (He et al. 2016, torchvision's "v1.5": the stride on the 3x3 convolution), defined here so that
stage one does not import the torchvision package.

Importing torchvision costs about 1.4 s of a 2-core machine's start-up (its ``ops`` pull in ``torch._dynamo``),
more than the rest of the start-up together, for one constructor. This module builds the same network: the
same module names, parameter shapes and buffers as ``torchvision.models.resnet50`` (so its ImageNet state dict
loads as is), the same arithmetic, and, from the same seed, the same random initialisation, bit for bit
(modules are created in torchvision's order and initialised by its rule). ``tests/test_backbone_resnet.py``
checks all three against torchvision itself.
"""
from __future__ import annotations

import torch
from torch import nn

EXPANSION = 4                      # a bottleneck's output has 4x its width
STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))   # (width, blocks, stride) of layer1..layer4


def _conv(cin: int, cout: int, k: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=k, stride=stride, padding=k // 2, bias=False)


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (stride here) -> 1x1 expand, plus the shortcut (projected when the shape changes)."""

    def __init__(self, cin: int, width: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        # Attribute order is registration order, which torchvision's initialisation loop follows.
        self.conv1, self.bn1 = _conv(cin, width, 1), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = _conv(width, width, 3, stride), nn.BatchNorm2d(width)
        self.conv3, self.bn3 = _conv(width, width * EXPANSION, 1), nn.BatchNorm2d(width * EXPANSION)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:        # (N, cin, H, W) -> (N, 4w, H/s, W/s)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += x if self.downsample is None else self.downsample(x)      # in place: no new 4w-channel tensor
        return self.relu(out)


class ResNet50(nn.Module):
    """(N, 3, H, W) float, ImageNet-normalised -> (N, 1000) logits, or (N, 2048) once ``fc`` is Identity."""

    def __init__(self, classes: int = 1000):
        super().__init__()
        self.conv1, self.bn1 = _conv(3, 64, 7, 2), nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        cin = 64
        for i, (width, blocks, stride) in enumerate(STAGES, start=1):
            setattr(self, f"layer{i}", self._stage(cin, width, blocks, stride))
            cin = width * EXPANSION
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(cin, classes)
        for m in self.modules():                       # torchvision's rule (zero_init_residual off)
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    @staticmethod
    def _stage(cin: int, width: int, blocks: int, stride: int) -> nn.Sequential:
        down = None
        if stride != 1 or cin != width * EXPANSION:    # created before its block, as torchvision does
            down = nn.Sequential(_conv(cin, width * EXPANSION, 1, stride), nn.BatchNorm2d(width * EXPANSION))
        layers = [Bottleneck(cin, width, stride, down)]
        layers += [Bottleneck(width * EXPANSION, width) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))          # (N, 64, H/4, W/4)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))     # (N, 2048, H/32, W/32)
        return self.fc(torch.flatten(self.avgpool(x), 1))             # (N, 2048) -> fc

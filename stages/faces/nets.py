"""MTCNN's three networks (P-Net, R-Net, O-Net) in PyTorch, loaded from the installed ``mtcnn`` package.

Zhang et al. 2016, "Joint Face Detection and Alignment using Multi-task Cascaded Convolutional Networks"
(https://arxiv.org/abs/1604.02878). The ``mtcnn`` package ships the original weights as lz4-compressed joblib
pickles of Keras ``get_weights()`` lists; ``import mtcnn`` would pull in TensorFlow, so the folder is found
with ``importlib.util.find_spec`` and the files are read with joblib. The layout conversion (HWIO -> OIHW,
dense ``w.T``, the NHWC flatten order) gives arrays equal to facenet-pytorch's converted weights bit for
bit; tests/test_faces_detector.py checks the detections against facenet-pytorch's.

Each network is a convolutional ``trunk`` and an ``outputs`` step (dense layers, head split). Every network
returns its heads in the order ``(box offsets, [landmarks,] face probability)``; the
probability is the face class of the two-way softmax, computed as ``sigmoid(l1 - l0)`` (the same number).
"""
from __future__ import annotations

import copy
import functools
import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline.core.errors import PipelineError

# The input normalisation of the original networks: (x - 127.5) / 128, x in [0, 255] RGB.
MEAN, SCALE = 127.5, 1.0 / 128.0


class WeightsError(PipelineError):
    """The mtcnn package or its weight files are missing or not what this code expects."""


def weights_dir() -> Path:
    """``mtcnn/assets/weights`` of the installed package, found without importing it (it imports TF)."""
    spec = importlib.util.find_spec("mtcnn")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError("the `mtcnn` package is not installed (it ships the MTCNN weights): pip install mtcnn")
    folder = Path(list(spec.submodule_search_locations)[0]) / "assets" / "weights"
    if not folder.is_dir():
        raise WeightsError(f"no weights folder in the installed mtcnn package: {folder} (mtcnn>=1.0 needed)")
    return folder


def _load_arrays(name: str, expected: int) -> list[np.ndarray]:
    """Arrays of ``<name>.lz4`` in Keras order. joblib files are pickles: only the package's own are read."""
    import joblib   # mtcnn's own dependency; imported here so `import stages.faces` stays light

    path = weights_dir() / f"{name}.lz4"
    if not path.is_file():
        raise WeightsError(f"MTCNN weight file missing: {path}")
    arrays = joblib.load(path)
    if not isinstance(arrays, list) or len(arrays) != expected:
        raise WeightsError(f"{path}: expected a list of {expected} arrays, found {type(arrays).__name__} "
                           f"of length {len(arrays) if hasattr(arrays, '__len__') else '?'}")
    return [np.asarray(a, dtype=np.float32) for a in arrays]


@functools.lru_cache(maxsize=1)
def weights_sha256() -> dict[str, str]:
    """Checksums of the three weight files, for provenance."""
    folder = weights_dir()
    return {n: hashlib.sha256((folder / f"{n}.lz4").read_bytes()).hexdigest() for n in ("pnet", "rnet", "onet")}


def _set_conv(conv: nn.Conv2d, kernel: np.ndarray, bias: np.ndarray) -> None:
    w = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())       # HWIO -> OIHW (H and W kept)
    if tuple(w.shape) != tuple(conv.weight.shape):
        raise WeightsError(f"conv kernel shape {tuple(w.shape)} != {tuple(conv.weight.shape)}")
    conv.weight.copy_(w)
    conv.bias.copy_(torch.from_numpy(bias))


def _set_dense(dense: nn.Linear, weight: np.ndarray, bias: np.ndarray) -> None:
    w = torch.from_numpy(weight.T.copy())                               # (in, out) -> (out, in)
    if tuple(w.shape) != tuple(dense.weight.shape):
        raise WeightsError(f"dense weight shape {tuple(w.shape)} != {tuple(dense.weight.shape)}")
    dense.weight.copy_(w)
    dense.bias.copy_(torch.from_numpy(bias))


def _set_prelu(prelu: nn.PReLU, alpha: np.ndarray) -> None:
    prelu.weight.copy_(torch.from_numpy(alpha.reshape(-1)))


def _face_prob(logits: torch.Tensor) -> torch.Tensor:
    """(N, 2, ...) two-way logits -> (N, ...) softmax probability of class 1 (face)."""
    return torch.sigmoid(logits[:, 1] - logits[:, 0])


class PNet(nn.Module):
    """Proposal network: fully convolutional, a 12x12 window every 2 px. (N,3,H,W) -> (N,4,h,w), (N,h,w)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.head = nn.Conv2d(32, 6, 1)      # both 1x1 heads in one conv: 4 box offsets, then 2 logits

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.head(x)                                             # (N, 6, h, w)

    def outputs(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return out[:, :4], _face_prob(out[:, 4:])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.outputs(self.trunk(x))

    def load_mtcnn(self, a: list[np.ndarray]) -> None:
        _set_conv(self.conv1, a[0], a[1]); _set_prelu(self.prelu1, a[2])
        _set_conv(self.conv2, a[3], a[4]); _set_prelu(self.prelu2, a[5])
        _set_conv(self.conv3, a[6], a[7]); _set_prelu(self.prelu3, a[8])
        # mtcnn's first head is the box head (a[9], a[10]), the second the face/not-face logits.
        kernel = np.concatenate([a[9], a[11]], axis=3)                  # (1, 1, 32, 6)
        _set_conv(self.head, kernel, np.concatenate([a[10], a[12]]))


def _keras_flatten(x: torch.Tensor) -> torch.Tensor:
    """Keras flattened NHWC after permuting to (N, W, H, C): in NCHW that is permute(0, 3, 2, 1)."""
    return x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)


class RNet(nn.Module):
    """Refinement network on 24x24 crops. (N,3,24,24) -> (N,4) box offsets, (N,) face probability."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.box, self.cls = nn.Linear(128, 4), nn.Linear(128, 2)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.prelu1(self.conv1(x)))                      # (N, 28, 11, 11)
        x = self.pool2(self.prelu2(self.conv2(x)))                      # (N, 48, 4, 4)
        return self.prelu3(self.conv3(x))                               # (N, 64, 3, 3)

    def outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.prelu4(self.dense4(_keras_flatten(x)))                 # (N, 128)
        return self.box(x), _face_prob(self.cls(x))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.outputs(self.trunk(x))

    def load_mtcnn(self, a: list[np.ndarray]) -> None:
        _set_conv(self.conv1, a[0], a[1]); _set_prelu(self.prelu1, a[2])
        _set_conv(self.conv2, a[3], a[4]); _set_prelu(self.prelu2, a[5])
        _set_conv(self.conv3, a[6], a[7]); _set_prelu(self.prelu3, a[8])
        _set_dense(self.dense4, a[9], a[10]); _set_prelu(self.prelu4, a[11])
        _set_dense(self.box, a[12], a[13])
        _set_dense(self.cls, a[14], a[15])


class ONet(nn.Module):
    """Output network on 48x48 crops -> (N,4) box offsets, (N,10) landmarks (x1..x5, y1..y5), (N,) prob."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.box, self.landmarks, self.cls = nn.Linear(256, 4), nn.Linear(256, 10), nn.Linear(256, 2)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.prelu1(self.conv1(x)))                      # (N, 32, 23, 23)
        x = self.pool2(self.prelu2(self.conv2(x)))                      # (N, 64, 10, 10)
        x = self.pool3(self.prelu3(self.conv3(x)))                      # (N, 64, 4, 4)
        return self.prelu4(self.conv4(x))                               # (N, 128, 3, 3)

    def outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.prelu5(self.dense5(_keras_flatten(x)))                 # (N, 256)
        return self.box(x), self.landmarks(x), _face_prob(self.cls(x))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.outputs(self.trunk(x))

    def load_mtcnn(self, a: list[np.ndarray]) -> None:
        _set_conv(self.conv1, a[0], a[1]); _set_prelu(self.prelu1, a[2])
        _set_conv(self.conv2, a[3], a[4]); _set_prelu(self.prelu2, a[5])
        _set_conv(self.conv3, a[6], a[7]); _set_prelu(self.prelu3, a[8])
        _set_conv(self.conv4, a[9], a[10]); _set_prelu(self.prelu4, a[11])
        _set_dense(self.dense5, a[12], a[13]); _set_prelu(self.prelu5, a[14])
        _set_dense(self.box, a[15], a[16])
        _set_dense(self.landmarks, a[17], a[18])
        _set_dense(self.cls, a[19], a[20])


_SPECS = {"pnet": (PNet, 13), "rnet": (RNet, 16), "onet": (ONet, 21)}


@torch.no_grad()
def load_net(name: str) -> nn.Module:
    """One of "pnet", "rnet", "onet" with the mtcnn package's weights, in eval mode, fp32 on the CPU."""
    cls, n_arrays = _SPECS[name]
    net = cls()
    net.load_mtcnn(_load_arrays(name, n_arrays))
    return net.eval().requires_grad_(False)


class _BlockedConv2d(nn.Module):
    """Conv2d on oneDNN blocked tensors (what torch.utils.mkldnn does, without its TorchScript classes)."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.args = (conv.padding, conv.stride, conv.dilation, conv.groups)
        self.register_buffer("weight", conv.weight.detach().to_mkldnn())
        self.register_buffer("bias", conv.bias.detach().to_mkldnn())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.mkldnn_convolution(x, self.weight, self.bias, *self.args)


class _BlockedPReLU(nn.Module):
    def __init__(self, prelu: nn.PReLU) -> None:
        super().__init__()
        self.register_buffer("weight", prelu.weight.detach().to_mkldnn())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.prelu(x, self.weight)


class MkldnnNet(nn.Module):
    """A net whose convolutional trunk runs on oneDNN (MKLDNN) blocked tensors: CPU only.

    Convolution, PReLU and max pooling stay in oneDNN's channel-blocked layout with no reorder between them.
    Measured on this project's CPU (one thread, CPU time, interleaved runs): P-Net over a 540p pyramid
    0.25 s vs 0.32 s in eager channels_last, R-Net 0.11 vs 0.13 s per 3,600 crops, O-Net 0.06 vs 0.07 s per
    300 crops; outputs equal. The dense layers and the head split run on ordinary tensors.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.blocked = copy.deepcopy(net)
        for name, child in net.named_children():
            if isinstance(child, nn.Conv2d):
                setattr(self.blocked, name, _BlockedConv2d(child))
            elif isinstance(child, nn.PReLU):
                setattr(self.blocked, name, _BlockedPReLU(child))

    def forward(self, x: torch.Tensor):
        return self.net.outputs(self.blocked.trunk(x.contiguous().to_mkldnn()).to_dense())

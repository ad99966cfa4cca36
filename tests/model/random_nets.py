"""Random networks in torchvision's naming, made without torch.

Shared by the model-pipeline tests (tests/model) and the engine-vs-ONNX Runtime tests (tests/e2e):
random weights let ResNet and MobileNetV2 be converted and compared without downloading anything.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools" / "model"))

import convert  # noqa: E402


def _conv(sd, rng, name, out_c, in_c, k, groups=1):
    fan_in = in_c // groups * k * k  # He init keeps activations O(1) with depth
    w = rng.standard_normal((out_c, in_c // groups, k, k), dtype=np.float32)
    sd[f"{name}.weight"] = w * np.float32(np.sqrt(2.0 / fan_in))


def _bn(sd, rng, name, c):
    # Deliberately far from identity, so a folding bug cannot hide.
    sd[f"{name}.weight"] = rng.uniform(0.5, 1.5, c).astype(np.float32)
    sd[f"{name}.bias"] = rng.normal(0, 0.2, c).astype(np.float32)
    sd[f"{name}.running_mean"] = rng.normal(0, 0.2, c).astype(np.float32)
    sd[f"{name}.running_var"] = rng.uniform(0.5, 2.0, c).astype(np.float32)
    sd[f"{name}.num_batches_tracked"] = np.array(1000, dtype=np.int64)


def _linear(sd, rng, name, out_f, in_f):
    sd[f"{name}.weight"] = (rng.standard_normal((out_f, in_f), dtype=np.float32)
                            * np.float32(1 / np.sqrt(in_f)))
    sd[f"{name}.bias"] = rng.normal(0, 0.1, out_f).astype(np.float32)


def random_resnet(arch: str, seed: int = 0) -> dict:
    kind, blocks = convert.RESNET_BLOCKS[arch]
    expansion = 1 if kind == "basic" else 4
    rng, sd = np.random.default_rng(seed), {}
    _conv(sd, rng, "conv1", 64, 3, 7)
    _bn(sd, rng, "bn1", 64)
    inplanes = 64
    for stage, (planes, n) in enumerate(zip([64, 128, 256, 512], blocks), start=1):
        for j in range(n):
            p, stride = f"layer{stage}.{j}", 2 if stage > 1 and j == 0 else 1
            if kind == "basic":
                _conv(sd, rng, f"{p}.conv1", planes, inplanes, 3)
                _conv(sd, rng, f"{p}.conv2", planes, planes, 3)
                bns = [planes, planes]
            else:
                _conv(sd, rng, f"{p}.conv1", planes, inplanes, 1)
                _conv(sd, rng, f"{p}.conv2", planes, planes, 3)
                _conv(sd, rng, f"{p}.conv3", planes * 4, planes, 1)
                bns = [planes, planes, planes * 4]
            for i, c in enumerate(bns, start=1):
                _bn(sd, rng, f"{p}.bn{i}", c)
            if stride != 1 or inplanes != planes * expansion:
                _conv(sd, rng, f"{p}.downsample.0", planes * expansion, inplanes, 1)
                _bn(sd, rng, f"{p}.downsample.1", planes * expansion)
            inplanes = planes * expansion
    _linear(sd, rng, "fc", 1000, 512 * expansion)
    return sd


def random_mobilenet_v2(seed: int = 0) -> dict:
    rng, sd = np.random.default_rng(seed), {}
    _conv(sd, rng, "features.0.0", 32, 3, 3)
    _bn(sd, rng, "features.0.1", 32)
    in_c, i = 32, 1
    for t, c, n, _s in convert.MOBILENET_V2_SETTING:
        for _ in range(n):
            p, hidden, k = f"features.{i}.conv", in_c * t, 0
            if t != 1:
                _conv(sd, rng, f"{p}.0.0", hidden, in_c, 1)
                _bn(sd, rng, f"{p}.0.1", hidden)
                k = 1
            _conv(sd, rng, f"{p}.{k}.0", hidden, hidden, 3, groups=hidden)
            _bn(sd, rng, f"{p}.{k}.1", hidden)
            _conv(sd, rng, f"{p}.{k + 1}", c, hidden, 1)
            _bn(sd, rng, f"{p}.{k + 2}", c)
            in_c, i = c, i + 1
    _conv(sd, rng, f"features.{i}.0", 1280, in_c, 1)
    _bn(sd, rng, f"features.{i}.1", 1280)
    _linear(sd, rng, "classifier.1", 1000, 1280)
    return sd

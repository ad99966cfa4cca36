"""The C engine against an independent implementation: ONNX Runtime.

The reference graph is built by tools/model/onnx_ref.py from the *unfolded* layers of the same
weights (Conv + BatchNormalization in NCHW), so a match checks the BatchNorm folding, the NHWC weight
layouts, the weight file and the execution (oneDNN, fp32) all at once. Inputs go to both sides byte for
byte: random tensors, and the C preprocessing's own output for the real photos.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, WEIGHTS

sys.path.insert(0, str(REPO / "tools" / "model"))
sys.path.insert(0, str(REPO / "tests" / "model"))

import convert  # noqa: E402
import onnx_ref  # noqa: E402
import pth_reader  # noqa: E402
from random_nets import random_resnet  # noqa: E402

# Logits are O(10); float32 summation order differs between the engines (and the engine's weights have
# BN folded in before summing), so agreement to 1e-3 absolute is "the same network", while any layout or
# folding mistake shows up as O(1) differences.
ATOL = 2e-3


def _onnx_session(arch: str, weights: Path):
    layers = convert.load_layers(arch, pth_reader.read_pth(weights))
    return onnx_ref.make_session(onnx_ref.build_onnx(layers), optimize=False, threads=2)


@pytest.fixture(scope="module")
def mnv2_reference():
    assert WEIGHTS.exists(), "run `make models` first"
    return _onnx_session("mobilenet_v2", WEIGHTS)


@pytest.fixture
def engine_dump(engine_dump):
    """The tool as a command line (the fp32 default)."""
    return [engine_dump]


def _ort_logits(session, nhwc: np.ndarray) -> np.ndarray:
    return session.run(None, {"input": np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2))})[0]


def _c_logits(engine_dump, model, nhwc: np.ndarray, tmp_path: Path) -> np.ndarray:
    n, h, w, _ = nhwc.shape
    src, out = tmp_path / "in.f32", tmp_path / "out.f32"
    nhwc.astype(np.float32).tofile(src)
    subprocess.run([*engine_dump, "--model", model, "--tensor", src, "--batch", str(n), "--height", str(h),
                    "--width", str(w), "--logits", out], check=True)
    return np.fromfile(out, np.float32).reshape(n, -1)


def _assert_same(c: np.ndarray, ref: np.ndarray):
    assert c.shape == ref.shape
    assert np.max(np.abs(c - ref)) < ATOL, f"max |C - ORT| = {np.max(np.abs(c - ref))}"
    assert (c.argmax(1) == ref.argmax(1)).all()


def test_random_inputs_batch_of_20(engine_dump, model, mnv2_reference, tmp_path):
    x = np.random.default_rng(1).standard_normal((20, 224, 224, 3), dtype=np.float32)
    _assert_same(_c_logits(engine_dump, model, x, tmp_path), _ort_logits(mnv2_reference, x))


def test_random_inputs_one_at_a_time(engine_dump, model, mnv2_reference, tmp_path):
    rng = np.random.default_rng(2)
    for _ in range(3):
        x = rng.uniform(-2.2, 2.7, (1, 224, 224, 3)).astype(np.float32)
        _assert_same(_c_logits(engine_dump, model, x, tmp_path), _ort_logits(mnv2_reference, x))


def test_other_input_size(engine_dump, model, mnv2_reference, tmp_path):
    # Reference mode runs images at their own size; global pooling makes any size >= 32 work.
    x = np.random.default_rng(3).uniform(0, 1, (1, 161, 203, 3)).astype(np.float32)
    _assert_same(_c_logits(engine_dump, model, x, tmp_path), _ort_logits(mnv2_reference, x))


@pytest.mark.parametrize("name", ["chelsea", "coffee", "grace_hopper", "dog", "eagle"])
@pytest.mark.parametrize("mode", ["imagenet", "reference"])
def test_real_photo(engine_dump, model, mnv2_reference, photos, tmp_path, name, mode):
    path, expected = photos[name]
    tensor, logits = tmp_path / "t.f32", tmp_path / "l.f32"
    out = subprocess.run([*engine_dump, "--model", model, "--image", path, "--preprocess", mode,
                          "--tensor-out", tensor, "--logits", logits],
                         check=True, capture_output=True, text=True).stdout
    h, w = map(int, out.split())
    c = np.fromfile(logits, np.float32)[None, :]
    ref = _ort_logits(mnv2_reference, np.fromfile(tensor, np.float32).reshape(1, h, w, 3))
    _assert_same(c, ref)
    if mode == "imagenet":  # the reference mode's unnormalised input is not what the weights expect
        top5 = set(np.argsort(-c[0])[:5].tolist())
        assert top5 & expected, f"{name}: none of {sorted(expected)} in top 5 {sorted(top5)}"


def test_resnet18_random_weights(engine_dump, tmp_path):
    pth, imgw = tmp_path / "r18.pth", tmp_path / "r18.imgw"
    pth_reader.write_pth(pth, random_resnet("resnet18", seed=7))
    labels = [f"class {i}" for i in range(1000)]
    layers = convert.load_layers("resnet18", pth_reader.read_pth(pth))
    convert.write_imgw(imgw, convert.fold(layers), labels,
                       {"arch": "resnet18", "source": {"file": pth.name, "sha256": "0" * 64}})
    ref = onnx_ref.make_session(onnx_ref.build_onnx(layers), optimize=False, threads=2)
    x = np.random.default_rng(4).standard_normal((2, 224, 224, 3), dtype=np.float32)
    c, r = _c_logits(engine_dump, imgw, x, tmp_path), _ort_logits(ref, x)
    # Random He-initialised ResNets have larger logits than the trained MobileNet; compare relatively.
    assert np.max(np.abs(c - r)) / np.max(np.abs(r)) < 1e-4
    assert (c.argmax(1) == r.argmax(1)).all()

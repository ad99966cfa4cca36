"""--precision fp32|bf16|int8: what each one runs, what it refuses, and how closely it agrees with fp32.

fp32's exactness is tests/e2e/test_engine_vs_onnxruntime.py's. Here: int8 runs from the weight file's
calibration and reports itself; bf16 runs only where oneDNN has AMX, and elsewhere says so and runs
fp32 (its accuracy test is then skipped, saying why); bad combinations are clear errors; and the
agreement with fp32 on the held-out photos (tools/model/accuracy.py) stays above a floor.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import PHOTOS, REPO

sys.path.insert(0, str(REPO / "tools" / "model"))
sys.path.insert(0, str(REPO / "tests" / "model"))
import accuracy  # noqa: E402
import calibrate  # noqa: E402
import convert  # noqa: E402
import photos as photo_sets  # noqa: E402
import pth_reader  # noqa: E402
from random_nets import random_resnet  # noqa: E402


def classify(imgcls, *args, env=None):
    return subprocess.run([imgcls, "classify", *map(str, args)], capture_output=True, text=True, timeout=300,
                          env=env)


def engine(imgcls, precision: str) -> dict:
    r = classify(imgcls, "--precision", precision, "--json", PHOTOS["dog"][0])
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["engine"]


def has_amx(imgcls) -> bool:
    return engine(imgcls, "fp32")["isa"] == "avx512_core_amx"


def cosine(a, b) -> float:
    return float(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b))


def dump_logits(engine_dump, model, image, precision, tmp_path, mode="imagenet") -> np.ndarray:
    out = tmp_path / f"{precision}-{mode}.f32"
    subprocess.run([engine_dump, "--model", model, "--image", image, "--preprocess", mode, "--precision", precision,
                    "--tensor-out", tmp_path / "t.f32", "--logits", out], check=True, capture_output=True)
    return np.fromfile(out, np.float32)


def test_int8_classifies_the_test_photos_and_says_it_ran_int8(imgcls, photos):
    for name, (path, expected) in photos.items():
        r = classify(imgcls, "--precision", "int8", "--json", "--top", "5", path)
        assert r.returncode == 0, r.stderr
        obj = json.loads(r.stdout)
        assert obj["engine"]["precision"] == "int8" and obj["engine"]["runtime"] == "onednn"
        assert {t["index"] for t in obj["top"]} & expected, f"{name}: none of {sorted(expected)} in int8's top 5"


def test_int8_logits_stay_close_to_fp32(engine_dump, model, photos, tmp_path):
    for name in ("dog", "eagle", "chelsea"):
        fp32, int8 = (dump_logits(engine_dump, model, photos[name][0], p, tmp_path) for p in ("fp32", "int8"))
        assert not np.array_equal(fp32, int8), "int8 gave fp32's exact logits: it did not run int8"
        assert cosine(fp32, int8) > 0.95, name


def test_precision_from_the_environment(imgcls, photos):
    import os

    r = classify(imgcls, "--json", photos["eagle"][0], env={**os.environ, "IMGCLS_PRECISION": "int8"})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["engine"]["precision"] == "int8"


def test_an_unknown_precision_is_a_clear_error(imgcls, photos):
    r = classify(imgcls, "--precision", "fp16", photos["dog"][0])
    assert r.returncode == 2 and "--precision must be fp32, bf16 or int8, not 'fp16'" in r.stderr and not r.stdout


def test_int8_without_calibration_is_a_clear_error_and_fp32_still_runs(imgcls, model, photos, tmp_path):
    bare = tmp_path / "bare.imgw"
    shutil.copy(model, bare)
    calibrate.write_calibration(bare, None)
    r = classify(imgcls, "--model", bare, "--precision", "int8", photos["dog"][0])
    assert r.returncode == 2 and "needs a weight file with int8 calibration" in r.stderr
    assert classify(imgcls, "--model", bare, photos["dog"][0]).returncode == 0


def _with_calibration(model, tmp_path, change) -> Path:
    bad = tmp_path / "bad.imgw"
    shutil.copy(model, bad)
    cal = convert.read_imgw(model)["header"]["calibration"]
    change(cal)
    calibrate.write_calibration(bad, cal)
    return bad


@pytest.mark.parametrize("change, message", [
    (lambda c: c["ranges"].pop(), "'ranges' must list num_values"),
    (lambda c: c["ranges"].__setitem__(3, [2.0, 1.0]), "value 3 has min > max"),
    (lambda c: c["ranges"].__setitem__(3, [0.0, 1e30]), "finite numbers within"),
    (lambda c: c["ranges"].__setitem__(3, [0.0]), "range of value 3 must be [min, max]"),
    (lambda c: c["ranges"].__setitem__(1, [-1.0, 6.0]), "follows a ReLU but has min < 0"),
    (lambda c: c.__setitem__("fp32_layers", [0, 0]), "fp32_layers[1] is not a convolution listed once"),
    (lambda c: c.__setitem__("fp32_layers", [100000]), "fp32_layers[0] is not a convolution"),
])
def test_a_bad_calibration_is_refused_as_a_corrupt_model(imgcls, model, photos, tmp_path, change, message):
    bad = _with_calibration(model, tmp_path, change)
    for precision in ("fp32", "int8"):  # the reader checks every field, whatever runs
        r = classify(imgcls, "--model", bad, "--precision", precision, photos["dog"][0])
        assert r.returncode == 2 and message in r.stderr, r.stderr


def test_bf16_without_amx_says_so_and_runs_fp32(imgcls, photos):
    if has_amx(imgcls):
        pytest.skip("this CPU has AMX: bf16 runs bf16 here (test_bf16_agrees_with_fp32)")
    r = classify(imgcls, "--precision", "bf16", "--json", photos["dog"][0])
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["engine"]["precision"] == "fp32"
    assert "event=bf16_unavailable" in r.stderr and "bf16 needs AMX" in r.stderr


def test_bf16_with_amx_runs_bf16(imgcls):
    if not has_amx(imgcls):
        pytest.skip("bf16 needs AMX (avx512_core_amx), which this CPU does not have")
    assert engine(imgcls, "bf16")["precision"] == "bf16"


@pytest.mark.parametrize("all_int8", [False, True], ids=["as-calibrated", "every-layer-int8"])
def test_int8_on_a_resnet(engine_dump, tmp_path, photos, all_int8):
    """ResNet's paths MobileNetV2 lacks. As calibrated (stem and first convolution fp32): the first
    block's add, whose residual is fp32, runs on its own; later blocks' residual sums with a ReLU after
    them are fused in int8. With every layer int8: the network input quantized, and int8 max pooling."""
    pth, imgw = tmp_path / "r18.pth", tmp_path / "r18.imgw"
    pth_reader.write_pth(pth, random_resnet("resnet18", seed=7))
    layers = convert.load_layers("resnet18", pth_reader.read_pth(pth))
    convert.write_imgw(imgw, convert.fold(layers), [f"class {i}" for i in range(1000)],
                       {"arch": "resnet18", "source": {"file": pth.name, "sha256": "0" * 64}})
    cal = calibrate.calibrate(imgw, photo_sets.calibration_photos()[:4])  # a few: the int8 paths are the point
    if all_int8:
        calibrate.write_calibration(imgw, {**cal, "fp32_layers": []})
    fp32, int8 = (dump_logits(engine_dump, imgw, photos["dog"][0], p, tmp_path) for p in ("fp32", "int8"))
    assert not np.array_equal(fp32, int8)
    assert cosine(fp32, int8) > 0.9


def test_calibration_and_held_out_photos_are_disjoint_and_enough():
    cal, held = photo_sets.calibration_photos(), photo_sets.held_out_photos()
    assert len(held) >= photo_sets.MIN_HELD_OUT, f"{len(held)} held-out photos (scripts/bootstrap.sh installs them)"
    assert len(cal) >= 10
    photo_sets.check_disjoint(cal, held)
    with pytest.raises(ValueError):
        photo_sets.check_disjoint(cal, held + cal[:1])


def test_the_model_was_calibrated_on_the_calibration_photos_only(model):
    cal = convert.read_imgw(model)["header"]["calibration"]
    assert cal["photos"] == [p.name for p in photo_sets.calibration_photos()]
    assert not set(cal["photos"]) & {p.name for p in photo_sets.held_out_photos()}


# Measured on 34 held-out photos at most 1024 pixels (make bench; docs/engine.md, "Precision"): int8
# agrees with fp32 on top-1 for 88% (imagenet) and 62% (reference), top-5 overlap 89% and 71% (Xeon
# with AMX; capped to AVX2: 85% / 84%, 56% / 69%); bf16 on 97% and 91%, top-5 98% and 92%. The issue's
# targets (int8 97% / 95%, bf16 99%) are not met on these photos. These floors catch a broken precision
# (which agrees on almost nothing; bf16 with its stem in bf16 agreed on 71% in reference mode), not a
# slightly noisier one. The tests shrink the photos to 512 pixels, which makes reference mode 4x
# cheaper (there, on AMX: int8 88% / 85%, 65% / 79%; bf16 97% / 98%, 94% / 97%).
TEST_MAX_SIDE = 512
INT8_FLOORS = {"imagenet": (0.75, 0.75), "reference": (0.35, 0.5)}
BF16_FLOORS = {"imagenet": (0.9, 0.9), "reference": (0.8, 0.85)}


@pytest.mark.slow
def test_int8_agrees_with_fp32_on_held_out_photos(imgcls, model):
    for r in accuracy.measure(imgcls, model, "int8", TEST_MAX_SIDE):
        top1, top5 = INT8_FLOORS[r["mode"]]
        assert r["photos"] >= photo_sets.MIN_HELD_OUT
        assert r["top1"] >= top1 and r["top5"] >= top5, r


@pytest.mark.slow
def test_bf16_agrees_with_fp32_on_held_out_photos(imgcls, model):
    if not has_amx(imgcls):
        pytest.skip("bf16 needs AMX (avx512_core_amx), which this CPU does not have")
    for r in accuracy.measure(imgcls, model, "bf16", TEST_MAX_SIDE):
        top1, top5 = BF16_FLOORS[r["mode"]]
        assert r["top1"] >= top1 and r["top5"] >= top5, r

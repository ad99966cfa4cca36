"""Convert a torchvision state dict into the imgcls weight file (``.imgw``).

    python tools/model/convert.py --arch mobilenet_v2 \\
        --weights models/mobilenet_v2-b0353104.pth \\
        --labels models/imagenet_labels.txt --out models/mobilenet_v2.imgw

The contract for the output is docs/weight-format.md; the C loader is written
against that document, so this file follows it to the letter.

Pipeline, each step a function the tests reuse:

1. ``load_layers(arch, state_dict)`` -> layer list in PyTorch layout (OIHW
   weights) with the BatchNorm parameters still attached: the *unfolded*
   network, which ``onnx_ref.build_onnx`` turns into an independent reference.
2. ``fold(layers)`` -> BatchNorm folded into conv weight and bias.
3. ``write_imgw(path, folded, labels, meta)`` -> transposes to the NHWC-native
   layouts and writes the file.  ``read_imgw`` / ``layers_from_imgw`` read it
   back for tests and for the folded ONNX graph used by the benchmark.

Architectures are described by walking the state dict with torchvision's
naming.  Channel counts, expansion ratios and block counts come from the
tensor shapes; only what a state dict cannot say (strides, padding rule) is
taken from torchvision's model definitions.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import struct
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pth_reader import PthError, read_pth  # noqa: E402

MAGIC = b"IMGCLSW\0"
FORMAT_VERSION = 1
MAX_HEADER = 4 << 20
ALIGN = 64
BN_EPS = 1e-5  # torchvision's BatchNorm2d default, used by both families

# torchvision's MobileNetV2 inverted_residual_setting: (t, c, n, s).  Only the
# strides are taken from it; t and c are read from the weights.
MOBILENET_V2_SETTING = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                        (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]

# Blocks per stage; used to refuse a state dict that is not the named arch.
RESNET_BLOCKS = {
    "resnet18": ("basic", [2, 2, 2, 2]),
    "resnet34": ("basic", [3, 4, 6, 3]),
    "resnet50": ("bottleneck", [3, 4, 6, 3]),
    "resnet101": ("bottleneck", [3, 4, 23, 3]),
    "resnet152": ("bottleneck", [3, 8, 36, 3]),
}
ARCHS = ["mobilenet_v2", *RESNET_BLOCKS]


class ConvertError(Exception):
    pass


def align(n: int, a: int = ALIGN) -> int:
    return (n + a - 1) & ~(a - 1)


# ------------------------------------------------------- building layers --


class _GraphBuilder:
    """Appends layers, numbering values and tracking their channel counts.

    Value 0 is the network input (3 channels).  Every layer writes a fresh
    value, so "each value is written by exactly one layer" and "inputs are
    written before they are read" hold by construction.
    """

    def __init__(self, sd: dict[str, np.ndarray]):
        self.sd = sd
        self.used: set[str] = set()
        self.layers: list[dict[str, Any]] = []
        self.channels = {0: 3}

    def tensor(self, key: str) -> np.ndarray:
        if key not in self.sd:
            raise ConvertError(f"state dict has no tensor {key!r}")
        self.used.add(key)
        return self.sd[key]

    def has(self, key: str) -> bool:
        return key in self.sd

    def _emit(self, layer: dict[str, Any], channels: int) -> int:
        out = len(self.channels)
        layer["output"] = out
        self.channels[out] = channels
        self.layers.append(layer)
        return out

    def _bn(self, prefix: str | None) -> dict[str, Any] | None:
        if prefix is None:
            return None
        p = {k: self.tensor(f"{prefix}.{k}") for k in ("weight", "bias", "running_mean", "running_var")}
        if self.has(f"{prefix}.num_batches_tracked"):
            self.used.add(f"{prefix}.num_batches_tracked")
        p["eps"] = BN_EPS
        return p

    def conv(self, x: int, name: str, stride: int, bn: str | None, act: str) -> int:
        w = self.tensor(f"{name}.weight")
        out_c, in_per_group, kh, kw = w.shape
        in_c = self.channels[x]
        if in_c % in_per_group:
            raise ConvertError(f"{name}: {in_c} input channels, weight wants groups of {in_per_group}")
        bias = self.tensor(f"{name}.bias") if self.has(f"{name}.bias") else None
        # torchvision pads every conv by (k-1)/2: "same" output at stride 1.
        pad_h, pad_w = (kh - 1) // 2, (kw - 1) // 2
        layer = dict(op="conv2d", name=name, input=x, in_channels=in_c, out_channels=out_c,
                     kernel=[kh, kw], stride=[stride, stride],
                     padding=[pad_h, pad_w, pad_h, pad_w], dilation=[1, 1],
                     groups=in_c // in_per_group, weight=w, bias=bias,
                     bn=self._bn(bn), activation=act)
        return self._emit(layer, out_c)

    def add(self, a: int, b: int, name: str, act: str) -> int:
        if self.channels[a] != self.channels[b]:
            raise ConvertError(f"{name}: adding {self.channels[a]} to {self.channels[b]} channels")
        return self._emit(dict(op="add", name=name, inputs=[a, b], activation=act), self.channels[a])

    def max_pool(self, x: int, name: str, k: int, stride: int, pad: int) -> int:
        layer = dict(op="max_pool2d", name=name, input=x, kernel=[k, k],
                     stride=[stride, stride], padding=[pad, pad, pad, pad])
        return self._emit(layer, self.channels[x])

    def global_avg_pool(self, x: int, name: str) -> int:
        return self._emit(dict(op="global_avg_pool", name=name, input=x), self.channels[x])

    def linear(self, x: int, name: str) -> int:
        w, b = self.tensor(f"{name}.weight"), self.tensor(f"{name}.bias")
        if w.shape[1] != self.channels[x]:
            raise ConvertError(f"{name}: {w.shape[1]} in_features, input has {self.channels[x]}")
        layer = dict(op="linear", name=name, input=x, in_features=int(w.shape[1]),
                     out_features=int(w.shape[0]), weight=w, bias=b, activation="none")
        return self._emit(layer, int(w.shape[0]))

    def check_all_used(self) -> None:
        # A tensor we did not place means the state dict is not the network
        # we think it is (another variant, extra head): refuse, don't guess.
        left = [k for k in self.sd if k not in self.used and not k.endswith("num_batches_tracked")]
        if left:
            raise ConvertError(f"{len(left)} tensors not used by the graph, e.g. {left[:5]}")


def _mobilenet_v2_strides() -> list[int]:
    return [s if i == 0 else 1 for _t, _c, n, s in MOBILENET_V2_SETTING for i in range(n)]


def _inverted_residual(g: _GraphBuilder, x: int, i: int, stride: int) -> int:
    p = f"features.{i}.conv"
    y = x
    if g.has(f"{p}.3.weight"):  # expand ratio > 1: conv.0 is the 1x1 expansion
        y = g.conv(y, f"{p}.0.0", 1, f"{p}.0.1", "relu6")
        dw, proj, bn = f"{p}.1", f"{p}.2", f"{p}.3"
    else:  # t == 1 (block 1): no expansion conv
        dw, proj, bn = f"{p}.0", f"{p}.1", f"{p}.2"
    y = g.conv(y, f"{dw}.0", stride, f"{dw}.1", "relu6")
    y = g.conv(y, proj, 1, bn, "none")  # linear bottleneck: no activation
    if stride == 1 and g.channels[x] == g.channels[y]:
        y = g.add(x, y, f"features.{i}.add", "none")
    return y


def _build_mobilenet_v2(g: _GraphBuilder) -> None:
    x = g.conv(0, "features.0.0", 2, "features.0.1", "relu6")
    strides = _mobilenet_v2_strides()
    for i, stride in enumerate(strides, start=1):
        x = _inverted_residual(g, x, i, stride)
    last = len(strides) + 1
    x = g.conv(x, f"features.{last}.0", 1, f"features.{last}.1", "relu6")
    x = g.global_avg_pool(x, "avgpool")
    g.linear(x, "classifier.1")  # classifier.0 is Dropout: nothing at inference


def _resnet_block(g: _GraphBuilder, x: int, p: str, stride: int, kind: str) -> int:
    if kind == "basic":
        y = g.conv(x, f"{p}.conv1", stride, f"{p}.bn1", "relu")
        y = g.conv(y, f"{p}.conv2", 1, f"{p}.bn2", "none")
    else:  # bottleneck, torchvision "v1.5": the stride sits on the 3x3 conv
        y = g.conv(x, f"{p}.conv1", 1, f"{p}.bn1", "relu")
        y = g.conv(y, f"{p}.conv2", stride, f"{p}.bn2", "relu")
        y = g.conv(y, f"{p}.conv3", 1, f"{p}.bn3", "none")
    shortcut = x
    if g.has(f"{p}.downsample.0.weight"):
        shortcut = g.conv(x, f"{p}.downsample.0", stride, f"{p}.downsample.1", "none")
    return g.add(y, shortcut, f"{p}.add", "relu")


def _build_resnet(g: _GraphBuilder, arch: str) -> None:
    kind, blocks = RESNET_BLOCKS[arch]
    x = g.conv(0, "conv1", 2, "bn1", "relu")
    x = g.max_pool(x, "maxpool", 3, 2, 1)
    for stage, n in enumerate(blocks, start=1):
        for j in range(n):
            stride = 2 if stage > 1 and j == 0 else 1
            x = _resnet_block(g, x, f"layer{stage}.{j}", stride, kind)
    x = g.global_avg_pool(x, "avgpool")
    g.linear(x, "fc")


def load_layers(arch: str, state_dict: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Unfolded layer list (PyTorch layouts, BN attached) for ``arch``."""
    g = _GraphBuilder(state_dict)
    if arch == "mobilenet_v2":
        _build_mobilenet_v2(g)
    elif arch in RESNET_BLOCKS:
        _build_resnet(g, arch)
    else:
        raise ConvertError(f"unknown arch {arch!r}; known: {', '.join(ARCHS)}")
    g.check_all_used()
    return g.layers


# ---------------------------------------------------------------- folding --


def _fold_conv(layer: dict[str, Any]) -> dict[str, Any]:
    out = dict(layer, bn=None)
    w = layer["weight"].astype(np.float64)
    b = np.zeros(w.shape[0]) if layer["bias"] is None else layer["bias"].astype(np.float64)
    bn = layer["bn"]
    if bn is not None:
        # y = gamma * (conv(x) + b - mean) / sqrt(var + eps) + beta
        scale = bn["weight"].astype(np.float64) / np.sqrt(bn["running_var"].astype(np.float64) + bn["eps"])
        w = w * scale[:, None, None, None]
        b = (b - bn["running_mean"]) * scale + bn["bias"]
    out["weight"], out["bias"] = w.astype(np.float32), b.astype(np.float32)
    return out


def fold(layers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fold BatchNorm into convolutions (in float64, cast to float32 once).

    Every conv comes out with a bias, as the file format requires one.
    """
    folded = []
    for layer in layers:
        if layer["op"] == "conv2d":
            layer = _fold_conv(layer)
        elif layer["op"] == "linear":
            layer = dict(layer, weight=layer["weight"].astype(np.float32),
                         bias=layer["bias"].astype(np.float32))
        folded.append(layer)
    return folded


# ------------------------------------------------------------ file layout --


def _is_depthwise(layer: dict[str, Any]) -> bool:
    return layer["groups"] == layer["in_channels"] == layer["out_channels"] and layer["groups"] > 1


def _conv_weight_to_file(layer: dict[str, Any]) -> np.ndarray:
    w = layer["weight"]  # OIHW
    if layer["groups"] == 1:
        return w.transpose(0, 2, 3, 1)  # OHWI
    if _is_depthwise(layer):
        return w.transpose(1, 2, 3, 0)  # (C,1,kh,kw) -> [1, kh, kw, C]
    raise ConvertError(f"{layer['name']}: grouped conv (groups={layer['groups']}) has no file layout")


def _conv_weight_from_file(layer: dict[str, Any], w: np.ndarray) -> np.ndarray:
    return w.transpose(3, 0, 1, 2) if _is_depthwise(layer) else w.transpose(0, 3, 1, 2)


_FILE_FIELDS = {
    "conv2d": ["input", "output", "in_channels", "out_channels", "kernel", "stride", "padding",
               "dilation", "groups", "weight", "bias", "activation"],
    "add": ["inputs", "output", "activation"],
    "max_pool2d": ["input", "output", "kernel", "stride", "padding"],
    "global_avg_pool": ["input", "output"],
    "linear": ["input", "output", "in_features", "out_features", "weight", "bias", "activation"],
}


class _TensorTable:
    """Collects tensors, assigning 64-byte aligned offsets from data start."""

    def __init__(self):
        self.entries: list[dict[str, Any]] = []
        self.arrays: list[np.ndarray] = []
        self.end = 0

    def add(self, name: str, a: np.ndarray) -> int:
        a = np.ascontiguousarray(a, dtype="<f4")
        offset = align(self.end)
        self.entries.append(dict(name=name, shape=list(a.shape), offset=offset, nbytes=a.nbytes))
        self.arrays.append(a)
        self.end = offset + a.nbytes
        return len(self.arrays) - 1


def _file_layer(layer: dict[str, Any], table: _TensorTable) -> dict[str, Any]:
    if layer.get("bn") is not None:
        raise ConvertError(f"{layer['name']}: BatchNorm not folded; call fold() first")
    rec = dict(layer)
    if layer["op"] == "conv2d":
        rec["weight"] = table.add(f"{layer['name']}.weight", _conv_weight_to_file(layer))
        rec["bias"] = table.add(f"{layer['name']}.bias", layer["bias"])
    elif layer["op"] == "linear":
        rec["weight"] = table.add(f"{layer['name']}.weight", layer["weight"])
        rec["bias"] = table.add(f"{layer['name']}.bias", layer["bias"])
    # Only the documented fields: a strict C reader may refuse anything else.
    return {"op": layer["op"], **{k: _json_int(rec[k]) for k in _FILE_FIELDS[layer["op"]]}}


def _json_int(v):
    # numpy ints are not JSON-serialisable; shapes come from numpy.
    if isinstance(v, (list, tuple)):
        return [int(x) for x in v]
    return v if isinstance(v, str) else int(v)


def _num_classes(layers: list[dict[str, Any]]) -> int:
    last = layers[-1]
    if last["op"] != "linear":
        raise ConvertError("the network must end in a linear layer (the logits)")
    return int(last["out_features"])


def build_header(folded: list[dict[str, Any]], labels: list[str], meta: dict[str, Any]):
    """Return (header dict, tensor arrays in file order)."""
    num_classes = _num_classes(folded)
    if len(labels) != num_classes:
        raise ConvertError(f"{len(labels)} labels for {num_classes} classes")
    table = _TensorTable()
    file_layers = [_file_layer(layer, table) for layer in folded]
    header = {
        "format": "imgcls-weights",
        "arch": meta["arch"],
        "source": meta["source"],
        "num_classes": num_classes,
        "labels": list(labels),
        "tensors": table.entries,
        "num_values": len(folded) + 1,  # value 0 is the input
        "output": folded[-1]["output"],
        "layers": file_layers,
    }
    return header, table.arrays


def write_imgw(path, folded: list[dict[str, Any]], labels: list[str], meta: dict[str, Any]) -> None:
    """Write ``folded`` layers as an .imgw file (atomically: tmp + rename).

    ``meta``: {"arch": str, "source": {"file": str, "sha256": str}}.
    """
    header, arrays = build_header(folded, labels, meta)
    write_framed(path, header, [(entry["offset"], a.tobytes()) for entry, a in zip(header["tensors"], arrays)])


def write_framed(path, header: dict[str, Any], chunks: list[tuple[int, bytes]]) -> None:
    """The file's framing (magic, version, header, data), atomically (tmp + rename); ``chunks`` are
    (offset from the data start, bytes), in order, each offset past the previous chunk's end."""
    hjson = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    if len(hjson) > MAX_HEADER:
        raise ConvertError(f"header is {len(hjson)} bytes, the format allows {MAX_HEADER}")
    data_start = align(16 + len(hjson))
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(MAGIC + struct.pack("<II", FORMAT_VERSION, len(hjson)) + hjson)
        for offset, data in chunks:
            f.write(b"\0" * (data_start + offset - f.tell()))  # alignment padding
            f.write(data)
    os.replace(tmp, path)


def read_imgw(path) -> dict[str, Any]:
    """Read an .imgw file: {"header", "tensors" (file layout), "data_start"}.

    Checks the framing, not the graph: a test-side reader, not the C one.
    """
    raw = Path(path).read_bytes()
    if raw[:8] != MAGIC:
        raise ConvertError("bad magic")
    version, hlen = struct.unpack_from("<II", raw, 8)
    if version != FORMAT_VERSION or hlen > MAX_HEADER:
        raise ConvertError(f"bad version {version} or header length {hlen}")
    header = json.loads(raw[16 : 16 + hlen].decode("utf-8"))
    data_start = align(16 + hlen)
    tensors = []
    for t in header["tensors"]:
        start = data_start + t["offset"]
        if start + t["nbytes"] > len(raw):
            raise ConvertError(f"tensor {t['name']} runs past the end of the file")
        a = np.frombuffer(raw, dtype="<f4", count=t["nbytes"] // 4, offset=start)
        tensors.append(a.reshape(t["shape"]).astype(np.float32))
    return {"header": header, "tensors": tensors, "data_start": data_start}


def layers_from_imgw(imgw: dict[str, Any]) -> list[dict[str, Any]]:
    """Folded layer list in PyTorch layout, rebuilt from a read .imgw file.

    This is what ``onnx_ref`` turns into the folded ONNX graph, so the
    transposes in the file are checked on the way back, not assumed.
    """
    tensors, layers = imgw["tensors"], []
    for i, rec in enumerate(imgw["header"]["layers"]):
        layer = dict(rec, name=f"layer{i}", bn=None)
        if rec["op"] == "conv2d":
            layer["weight"] = _conv_weight_from_file(layer, tensors[rec["weight"]])
            layer["bias"] = tensors[rec["bias"]]
        elif rec["op"] == "linear":
            layer["weight"], layer["bias"] = tensors[rec["weight"]], tensors[rec["bias"]]
        layers.append(layer)
    return layers


# -------------------------------------------------------------------- CLI --


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_labels(path) -> list[str]:
    # Labels may contain spaces ("tile roof"): one per line, never split.
    return [line.rstrip("\r\n") for line in Path(path).read_text(encoding="utf-8").splitlines()]


def convert(arch: str, weights, labels_path, out) -> dict[str, Any]:
    folded = fold(load_layers(arch, read_pth(weights)))
    meta = {"arch": arch, "source": {"file": Path(weights).name, "sha256": sha256_file(weights)}}
    write_imgw(out, folded, read_labels(labels_path), meta)
    return meta


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", required=True, choices=ARCHS)
    ap.add_argument("--weights", required=True, help="torchvision .pth state dict")
    ap.add_argument("--labels", required=True, help="class names, one per line")
    ap.add_argument("--out", required=True, help="output .imgw file")
    args = ap.parse_args(argv)
    try:
        convert(args.arch, args.weights, args.labels, args.out)
    except (ConvertError, PthError) as e:
        print(f"convert: {e}", file=sys.stderr)
        return 1
    print(f"convert: wrote {args.out} ({os.path.getsize(args.out)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

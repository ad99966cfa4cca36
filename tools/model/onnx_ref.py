"""Build an ONNX reference graph of an imgcls layer list.

Two uses:

* correctness: built from the *unfolded* layers (Conv + BatchNormalization),
  the graph is an independent check of both our BN folding and the C engine;
* speed: built from the *folded* .imgw file (Conv with bias, no BN), it is
  "the same graph" the C engine runs, for a fair ONNX Runtime comparison.

    python tools/model/onnx_ref.py --arch mobilenet_v2 --weights X.pth --out ref.onnx
    python tools/model/onnx_ref.py --from-imgw models/mobilenet_v2.imgw --out folded.onnx

The graph is NCHW float32 (ONNX's native layout; the C engine is NHWC), with
input "input" of shape [N, 3, H, W] (all symbolic) and output "logits" [N, C].
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
import convert  # noqa: E402
from pth_reader import read_pth  # noqa: E402

OPSET = 13
# IR 7 is what opset 13 shipped with: old enough for any onnxruntime we pin,
# whereas onnx's default IR version can be newer than the runtime accepts.
IR_VERSION = 7
INPUT, OUTPUT = "input", "logits"


class _OnnxBuilder:
    def __init__(self, output_value: int):
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.output_value = output_value
        self._init_names: set[str] = set()

    def value(self, v: int) -> str:
        if v == 0:
            return INPUT
        return OUTPUT if v == self.output_value else f"v{v}"

    def init(self, name: str, a: np.ndarray) -> str:
        if name not in self._init_names:
            self._init_names.add(name)
            self.inits.append(numpy_helper.from_array(np.asarray(a, dtype=np.float32), name))
        return name

    def node(self, op: str, inputs: list[str], output: str, name: str, **attrs) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=name, **attrs))
        return output

    def activation(self, act: str, x: str, out: str, name: str) -> str:
        if act == "none":
            # Rename rather than add an Identity node: x was just produced by
            # the last node, and the folded graph should hold no extra nodes.
            assert self.nodes[-1].output[0] == x
            self.nodes[-1].output[0] = out
            return out
        if act == "relu":
            return self.node("Relu", [x], out, name + "/relu")
        if act == "relu6":  # opset >= 11 Clip takes min/max as inputs
            lo, hi = self.init("clip_min", np.float32(0)), self.init("clip_max", np.float32(6))
            return self.node("Clip", [x, lo, hi], out, name + "/relu6")
        raise ValueError(f"unknown activation {act!r}")


def _conv(b: _OnnxBuilder, layer: dict[str, Any]) -> None:
    name, out = layer["name"], b.value(layer["output"])
    inputs = [b.value(layer["input"]), b.init(f"{name}.weight", layer["weight"])]
    if layer["bias"] is not None:
        inputs.append(b.init(f"{name}.bias", layer["bias"]))
    # ONNX pads are [x1_begin, x2_begin, x1_end, x2_end] = [top, left, bottom, right],
    # the same order as the layer's padding field.
    y = b.node("Conv", inputs, f"{name}/conv", name + "/conv",
               kernel_shape=layer["kernel"], strides=layer["stride"], pads=layer["padding"],
               dilations=layer["dilation"], group=layer["groups"])
    bn = layer.get("bn")
    if bn is not None:
        names = [b.init(f"{name}.bn.{k}", bn[k]) for k in ("weight", "bias", "running_mean", "running_var")]
        y = b.node("BatchNormalization", [y, *names], f"{name}/bn", name + "/bn", epsilon=bn["eps"])
    b.activation(layer["activation"], y, out, name)


def _add(b: _OnnxBuilder, layer: dict[str, Any]) -> None:
    name = layer["name"]
    y = b.node("Add", [b.value(v) for v in layer["inputs"]], f"{name}/sum", name + "/add")
    b.activation(layer["activation"], y, b.value(layer["output"]), name)


def _max_pool(b: _OnnxBuilder, layer: dict[str, Any]) -> None:
    b.node("MaxPool", [b.value(layer["input"])], b.value(layer["output"]), layer["name"],
           kernel_shape=layer["kernel"], strides=layer["stride"], pads=layer["padding"])


def _global_avg_pool(b: _OnnxBuilder, layer: dict[str, Any]) -> None:
    b.node("GlobalAveragePool", [b.value(layer["input"])], b.value(layer["output"]), layer["name"])


def _linear(b: _OnnxBuilder, layer: dict[str, Any]) -> None:
    name = layer["name"]
    # The input is N x C x 1 x 1 after global pooling; Gemm needs N x C.
    flat = b.node("Flatten", [b.value(layer["input"])], f"{name}/flat", name + "/flatten", axis=1)
    w, bias = b.init(f"{name}.weight", layer["weight"]), b.init(f"{name}.bias", layer["bias"])
    y = b.node("Gemm", [flat, w, bias], f"{name}/gemm", name + "/gemm", transB=1)
    b.activation(layer["activation"], y, b.value(layer["output"]), name)


_EMITTERS = {"conv2d": _conv, "add": _add, "max_pool2d": _max_pool,
             "global_avg_pool": _global_avg_pool, "linear": _linear}


def build_onnx(layers: list[dict[str, Any]], graph_name: str = "imgcls") -> onnx.ModelProto:
    """ONNX model of a layer list (unfolded or folded, PyTorch layouts)."""
    b = _OnnxBuilder(layers[-1]["output"])
    for layer in layers:
        _EMITTERS[layer["op"]](b, layer)
    num_classes = layers[-1]["out_features"]
    graph = helper.make_graph(
        b.nodes, graph_name,
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["N", num_classes])],
        initializer=b.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="imgcls-onnx_ref")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def build_onnx_from_imgw(path) -> onnx.ModelProto:
    """The folded graph, read back from an .imgw file (no BatchNormalization)."""
    return build_onnx(convert.layers_from_imgw(convert.read_imgw(path)), "imgcls-folded")


def make_session(model: onnx.ModelProto, optimize: bool = True, threads: int = 1):
    """An onnxruntime session for ``model``.

    ``optimize=False`` matters for the reference: ORT's own optimiser fuses
    Conv+BatchNormalization, and the point of the unfolded graph is to run
    BatchNormalization as written, independently of any folding.
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Build an ONNX reference graph.")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--weights", help="torchvision .pth: unfolded graph (Conv + BatchNormalization)")
    src.add_argument("--from-imgw", help=".imgw file: folded graph (Conv with bias)")
    ap.add_argument("--arch", choices=convert.ARCHS, help="required with --weights")
    ap.add_argument("--out", required=True, help="output .onnx file")
    args = ap.parse_args(argv)
    if args.weights:
        if not args.arch:
            ap.error("--arch is required with --weights")
        model = build_onnx(convert.load_layers(args.arch, read_pth(args.weights)), args.arch)
    else:
        model = build_onnx_from_imgw(args.from_imgw)
    onnx.save_model(model, args.out)
    print(f"onnx_ref: wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

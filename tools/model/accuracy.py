"""How closely a reduced precision (bf16, int8) agrees with fp32, on the held-out photos.

    python tools/model/accuracy.py build/imgcls models/mobilenet_v2.imgw int8

For each preprocessing mode, `imgcls classify --json --top 5` runs once in fp32 and once in the
precision under test on the same files; the report is, over the photos, the share whose top-1 class
is the same (top1) and the mean share of fp32's top 5 that the other's top 5 also holds (top5). The
photos are photos.held_out_photos(), none of which calibration saw; each is first shrunk to at most
MAX_SIDE pixels on its longer side (as a PNG, so nothing is lost twice), because reference mode runs
the network at the photo's own size and some of them are 16 MP.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import photos  # noqa: E402

MAX_SIDE = 1024
MODES = ("imagenet", "reference")


def prepare(paths: list[Path], folder: Path, max_side: int = MAX_SIDE) -> list[Path]:
    out = []
    for i, p in enumerate(paths):
        img = photos.load_rgb(p)
        img.thumbnail((max_side, max_side))
        dst = folder / f"{i:02d}-{p.stem}.png"
        img.save(dst)
        out.append(dst)
    return out


def top5(imgcls: Path, model: Path, files: list[Path], precision: str, mode: str) -> dict[str, list[int]]:
    r = subprocess.run([str(imgcls), "classify", "--model", str(model), "--json", "--top", "5",
                        "--precision", precision, "--preprocess", mode, *map(str, files)],
                       capture_output=True, text=True, check=True)
    got = {}
    for line in r.stdout.splitlines():
        d = json.loads(line)
        if d["engine"]["precision"] != precision:
            raise RuntimeError(f"asked for {precision}, the engine ran {d['engine']['precision']}")
        got[d["file"]] = [t["index"] for t in d["top"]]
    if len(got) != len(files):
        raise RuntimeError(f"{len(files)} photos, {len(got)} answers: {r.stderr.strip()}")
    return got


def agreement(imgcls: Path, model: Path, files: list[Path], precision: str, mode: str) -> dict:
    ref, low = top5(imgcls, model, files, "fp32", mode), top5(imgcls, model, files, precision, mode)
    n = len(ref)
    return {"precision": precision, "mode": mode, "photos": n,
            "top1": sum(ref[f][0] == low[f][0] for f in ref) / n,
            "top5": sum(len(set(ref[f]) & set(low[f])) / 5 for f in ref) / n,
            "differ": sorted(f for f in ref if ref[f][0] != low[f][0])}


def measure(imgcls: Path, model: Path, precision: str, max_side: int = MAX_SIDE) -> list[dict]:
    held = photos.held_out_photos()
    with tempfile.TemporaryDirectory() as d:
        files = prepare(held, Path(d), max_side)
        return [agreement(imgcls, model, files, precision, mode) for mode in MODES]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("imgcls", type=Path)
    ap.add_argument("model", type=Path)
    ap.add_argument("precision", choices=["bf16", "int8"])
    args = ap.parse_args(argv)
    for r in measure(args.imgcls, args.model, args.precision):
        print(f"{r['precision']} {r['mode']:9s} photos {r['photos']}  top-1 {r['top1']:.1%}  top-5 {r['top5']:.1%}"
              f"  differ: {', '.join(r['differ']) or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

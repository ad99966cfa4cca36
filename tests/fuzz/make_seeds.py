"""Writes the generated seed corpora of the fuzz targets into <out>/<target>/.

The committed seeds (tests/fuzz/seeds/) are small hand-written texts. These are made at run time
because they come from third-party images, which are never committed: the real photos the tests use
(tests/conftest.py PHOTOS), shrunk and re-encoded in every variant the decoder handles, EXIF blocks
with every orientation, tiny weight files with every layer type, and messages and uploads that carry
a real image.

    .venv/bin/python tests/fuzz/make_seeds.py build-fuzz/seeds
"""

from __future__ import annotations

import base64
import io
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tools" / "model"))

from conftest import PHOTOS  # noqa: E402
import calibrate  # noqa: E402
import convert  # noqa: E402

ID = "0123456789abcdef0123456789abcdef"


def exif_block(orientation: int, big_endian: bool = True) -> bytes:
    """A TIFF block (no "Exif\\0\\0") with Orientation and a few other IFD0 tags."""
    e = Image.Exif()
    e[0x0112] = orientation
    e[0x010F] = "imgcls"  # Make
    e[0x0131] = "fuzz seeds"  # Software
    raw = e.tobytes()[6:]  # drop "Exif\0\0"
    if not big_endian:
        # Pillow writes big-endian; a little-endian block is the same tags re-packed by hand below.
        raw = b"II*\x00\x08\x00\x00\x00\x01\x00\x12\x01\x03\x00\x01\x00\x00\x00" + bytes([orientation, 0, 0, 0]) + b"\x00\x00\x00\x00"
    return raw


def small_photos() -> dict[str, Image.Image]:
    out = {}
    for name, (path, _) in PHOTOS.items():
        if Path(path).exists():
            im = Image.open(path).convert("RGB")
            im.thumbnail((96, 96))
            out[name] = im
    return out


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    return b.getvalue()


def image_seeds(photos: dict[str, Image.Image]) -> dict[str, bytes]:
    seeds = {}
    for name, im in photos.items():
        seeds[f"{name}.jpg"] = encode(im, "JPEG", quality=80)
        seeds[f"{name}.png"] = encode(im, "PNG")
    im = photos.get("dog") or next(iter(photos.values()))
    seeds["progressive.jpg"] = encode(im, "JPEG", progressive=True, quality=70)
    seeds["gray.jpg"] = encode(im.convert("L"), "JPEG")
    seeds["cmyk.jpg"] = encode(im.convert("CMYK"), "JPEG")
    seeds["444.jpg"] = encode(im, "JPEG", subsampling=0)
    seeds["orient6.jpg"] = encode(im, "JPEG", exif=b"Exif\x00\x00" + exif_block(6))
    seeds["orient3.jpg"] = encode(im, "JPEG", exif=b"Exif\x00\x00" + exif_block(3, big_endian=False))
    seeds["rgba.png"] = encode(im.convert("RGBA"), "PNG")
    seeds["palette.png"] = encode(im.convert("P", palette=Image.ADAPTIVE, colors=16), "PNG")
    seeds["gray.png"] = encode(im.convert("L"), "PNG")
    seeds["gray16.png"] = encode(Image.fromarray((np.asarray(im.convert("L"), np.uint16) * 257)), "PNG")
    seeds["orient8.png"] = encode(im, "PNG", exif=exif_block(8))
    # Large enough for DCT scaling at the imagenet hint (shorter side >= 512): a flat image compresses
    # to almost nothing.
    seeds["big_flat.jpg"] = encode(Image.new("RGB", (1200, 800), (120, 30, 200)), "JPEG", quality=50)
    seeds["tiny.png"] = encode(Image.new("RGB", (16, 16)), "PNG")  # refused: too small
    # One real photo at full size, for the paths only real data reaches (stored as is, not decoded).
    gh = PHOTOS["grace_hopper"][0]
    if Path(gh).exists():
        seeds["grace_hopper_full.jpg"] = Path(gh).read_bytes()
    return seeds


def exif_seeds() -> dict[str, bytes]:
    seeds = {}
    for o in range(1, 9):
        seeds[f"jpeg_mm_{o}"] = b"\x01" + exif_block(o)
        seeds[f"png_mm_{o}"] = b"\x00" + exif_block(o)
    seeds["jpeg_ii_6"] = b"\x01" + exif_block(6, big_endian=False)
    seeds["png_ii_5"] = b"\x00" + exif_block(5, big_endian=False)
    return seeds


def tiny_model(calibrated: bool = False) -> bytes:
    """Every layer type of the format in a few hundred bytes of weights; with int8 calibration (made-up
    ranges: the parser's checks are the point, not the numbers) when `calibrated`."""
    rng = np.random.default_rng(0)
    r = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    sd = {"c0.weight": r(4, 3, 3, 3), "c0.bias": r(4),
          "dw.weight": r(4, 1, 3, 3), "dw.bias": r(4),
          "pw.weight": r(4, 4, 1, 1), "pw.bias": r(4),
          "fc.weight": r(3, 4), "fc.bias": r(3)}
    g = convert._GraphBuilder(sd)
    x = g.conv(0, "c0", 2, None, "relu6")
    y = g.conv(x, "dw", 1, None, "relu")
    y = g.conv(y, "pw", 1, None, "none")
    x = g.add(x, y, "add", "relu")
    x = g.max_pool(x, "pool", 3, 2, 1)
    x = g.global_avg_pool(x, "gap")
    g.linear(x, "fc")
    path = Path("/tmp") / f"imgcls-fuzz-seed-{np.random.default_rng().integers(1 << 30)}.imgw"
    try:
        convert.write_imgw(path, convert.fold(g.layers), ["cat", "dog", "caf\u00e9"],
                           {"arch": "tiny", "source": {"file": "seed", "sha256": "0" * 64}})
        if calibrated:
            n = len(g.layers) + 1
            calibrate.write_calibration(path, {"ranges": [[0.0, 1.0 + v] for v in range(n)], "fp32_layers": [0]})
        return path.read_bytes()
    finally:
        path.unlink(missing_ok=True)


def multipart(name: str, filename: str, data: bytes) -> bytes:
    head = f'--XyZ\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
    return (head + "Content-Type: image/jpeg\r\n\r\n").encode() + data + b"\r\n--XyZ--\r\n"


def main(argv: list[str]) -> int:
    out = Path(argv[1])
    photos = small_photos()
    images = image_seeds(photos)
    small_jpg = encode(photos["grace_hopper"].resize((40, 40)), "JPEG", quality=60)
    req = {"v": 1, "id": ID, "file": "grace_hopper.jpg", "reply_to": "sqlite:///d/q.db?queue=replies",
           "image_b64": base64.b64encode(images["grace_hopper.jpg"]).decode()}
    corpora = {
        "image": images,
        "exif": exif_seeds(),
        "model_file": {"tiny.imgw": tiny_model(), "tiny_calibrated.imgw": tiny_model(calibrated=True)},
        "message": {"request_photo.json": json.dumps(req, separators=(",", ":")).encode()},
        "web_upload": {"photo": b"\x00" + multipart("myfile", "grace_hopper.jpg", small_jpg),
                       "photo_chunked": b"\x02" + multipart("myfile", "a.jpg", small_jpg)},
    }
    for target, seeds in corpora.items():
        d = out / target
        d.mkdir(parents=True, exist_ok=True)
        for name, data in seeds.items():
            (d / name).write_bytes(data)
    print(f"make_seeds: {sum(len(s) for s in corpora.values())} seeds in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

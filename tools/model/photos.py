"""The real photos int8 is calibrated and checked on, taken from packages that ship them.

Two sets, from different packages, so that no photo is in both (``check_disjoint`` also compares
their bytes):

* ``calibration_photos()``: scikit-image's and matplotlib's sample photos (Python packages the
  venv already has, so ``make models`` can calibrate with nothing else installed);
* ``held_out_photos()``: the photographs three Debian packages ship: darknet's data/*.jpg,
  mate-backgrounds' nature/ folder and lomiri-wallpapers-16.04 (scripts/bootstrap.sh installs them;
  the other folders of such packages hold drawings). Only the accuracy checks (tests/e2e and
  ``make bench``) read these; calibration never does.

Nothing here is committed: the photos are read where the packages put them.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

import numpy as np

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)

# Photographs among scikit-image's data files (its drawings, binary masks and synthetic test patterns
# are left out); grey ones are read as RGB, as the service does.
_SKIMAGE = ["astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png", "clock_motion.png",
            "coffee.png", "coins.png", "grass.png", "gravel.png", "hubble_deep_field.jpg", "ihc.png",
            "microaneurysms.png", "moon.png", "motorcycle_left.png", "motorcycle_right.png", "page.png",
            "retina.jpg", "rocket.jpg", "text.png"]
_MATPLOTLIB = ["grace_hopper.jpg"]

# (package, the part of its file list that is photographs)
_HELD_OUT = [("darknet", re.compile(r"^/usr/share/darknet/data/[^/]+\.jpg$")),
             ("mate-backgrounds", re.compile(r"^/usr/share/backgrounds/mate/nature/[^/]+\.jpg$")),
             ("lomiri-wallpapers-16.04", re.compile(r"^/usr/share/backgrounds/[^/]+\.jpg$"))]
MIN_HELD_OUT = 30


def calibration_photos() -> list[Path]:
    import matplotlib
    import skimage

    sk = Path(skimage.__file__).parent / "data"
    mpl = Path(matplotlib.get_data_path()) / "sample_data"
    return [p for p in [sk / n for n in _SKIMAGE] + [mpl / n for n in _MATPLOTLIB] if p.is_file()]


def held_out_photos() -> list[Path]:
    """The held-out packages' photographs that are installed, sorted (dpkg says which files are whose)."""
    found: set[Path] = set()
    for package, pattern in _HELD_OUT:
        try:
            r = subprocess.run(["dpkg-query", "-L", package], capture_output=True, text=True)
        except FileNotFoundError:  # not Debian: no package says which photos are its
            return []
        if r.returncode == 0:
            found.update(Path(f) for f in r.stdout.splitlines() if pattern.match(f) and Path(f).is_file())
    return sorted(found)


def check_disjoint(a: list[Path], b: list[Path]) -> None:
    """Raises ValueError if a photo (by path or by content) is in both sets."""
    def digests(ps):
        return {hashlib.sha256(p.read_bytes()).hexdigest(): p for p in ps}
    da, db = digests(a), digests(b)
    both = set(a) & set(b) | {da[h] for h in set(da) & set(db)}
    if both:
        raise ValueError(f"photos in both the calibration and the held-out set: {sorted(map(str, both))}")


def load_rgb(path: Path):
    from PIL import Image

    return Image.open(path).convert("RGB")


def imagenet_tensor(img) -> np.ndarray:
    """torchvision's Resize(256), CenterCrop(224), ToTensor, Normalize, with Pillow: 1x3x224x224."""
    from PIL import Image

    w, h = img.size
    size = (256, int(256 * h / w)) if w <= h else (int(256 * w / h), 256)
    img = img.resize(size, Image.BILINEAR)
    left, top = int(round((size[0] - 224) / 2.0)), int(round((size[1] - 224) / 2.0))
    img = img.crop((left, top, left + 224, top + 224))
    a = (np.asarray(img, np.float32) / 255.0 - MEAN) / STD
    return np.ascontiguousarray(a.transpose(2, 0, 1))[None]


def reference_tensor(img) -> np.ndarray:
    """The original assignment's preprocessing: the image at its own size, in [0, 1]: 1x3xHxW."""
    a = np.asarray(img, np.float32) / 255.0
    return np.ascontiguousarray(a.transpose(2, 0, 1))[None]

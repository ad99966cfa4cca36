"""`imgcls web` end to end, over loopback, with the real queue and buckets.

A stand-in worker (build/fake_worker, tests/tools/fake_worker.c) answers through the real protocol, so
these tests need no model: by default it answers "echo <file> <bytes> <fnv1a-32>", which lets each
client check that it got the answer for its own upload; an image starting with EFORMAT or ETOOBIG gets
that error. Every server is started on a free port (--port 0, read back from its log) and stopped at
the end of its test. Nothing here sleeps to wait: it polls for a condition with a deadline.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from conftest import BUILD

WAIT_S = 20  # the deadline of every poll; generous, since the ASan build is slow


def wait_for(cond, what: str, timeout: float = WAIT_S):
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def fnv1a(data: bytes) -> int:
    h = 2166136261
    for b in data:
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


def echo_label(name: str, data: bytes) -> str:
    return f"echo {name} {len(data)} {fnv1a(data):08x}"


@pytest.fixture(scope="session")
def fake_worker() -> Path:
    path = BUILD / "fake_worker"
    assert path.exists(), f"{path} is missing: run `make` first"
    return path


class Stack:
    """One web tier, and optionally a fake worker, on their own queue database and buckets."""

    def __init__(self, root: Path, imgcls: Path, fake_worker: Path):
        self.root, self.imgcls, self.fake_worker_bin = root, imgcls, fake_worker
        root.mkdir(parents=True, exist_ok=True)
        db = root / "queue.db"
        self.queue = f"sqlite://{db}?queue=requests"
        self.reply_queue = f"sqlite://{db}?queue=replies-web1"
        self.in_dir, self.out_dir = root / "in", root / "out"
        self.web: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None
        self.web_log = root / "web.log"
        self.port = 0
        self._files = []

    def web_args(self, **opts) -> list[str]:
        args = ["--port", "0", "--queue", self.queue, "--reply-queue", self.reply_queue,
                "--in-bucket", f"file://{self.in_dir}", "--out-bucket", f"file://{self.out_dir}"]
        for k, v in opts.items():
            args += [f"--{k.replace('_', '-')}", str(v)]
        return args

    def start_web(self, **opts) -> "Stack":
        log = open(self.web_log, "ab")
        self._files.append(log)
        self.web = subprocess.Popen([self.imgcls, "web", *self.web_args(**opts)], stdout=subprocess.DEVNULL,
                                    stderr=log)
        line = wait_for(lambda: self._listening_line(), "the web tier to listen")
        self.port = int(re.search(r" port=(\d+)", line).group(1))
        wait_for(lambda: self._healthy(), "/healthz to answer 200")
        return self

    def _listening_line(self):
        assert self.web.poll() is None, f"imgcls web exited: {self.log()}"
        for line in self.log().splitlines():
            if "event=listening" in line:
                return line
        return None

    def _healthy(self) -> bool:
        try:
            return requests.get(self.url + "healthz", timeout=5).status_code == 200
        except requests.ConnectionError:
            return False

    def start_worker(self, label: str | None = None) -> "Stack":
        log = open(self.root / "worker.log", "ab")
        self._files.append(log)
        args = [self.fake_worker_bin, "--queue", self.queue, "--in-bucket", f"file://{self.in_dir}",
                "--out-bucket", f"file://{self.out_dir}"]
        if label is not None:
            args += ["--label", label]
        self.worker = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log)
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def log(self) -> str:
        return self.web_log.read_text(errors="replace")

    def stop_web(self, sig=signal.SIGTERM) -> int:
        proc, self.web = self.web, None
        if proc is None:
            return 0
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            return proc.wait(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise

    def close(self) -> int | None:
        """Stops both; returns the web tier's exit status (None if it was not running)."""
        status = None
        for proc in (self.worker, self.web):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=WAIT_S)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if self.web is not None:
            status = self.web.returncode
        self.worker = self.web = None
        for f in self._files:
            f.close()
        return status


def assert_clean_exit(s: Stack):
    """A clean stop exits 0, and the sanitizer builds print nothing (they exit non-zero on a finding)."""
    status = s.close()
    assert status in (None, 0), f"imgcls web exited {status}: {s.log()[-3000:]}"
    assert "Sanitizer" not in s.log() and "runtime error" not in s.log()


@pytest.fixture
def stack(tmp_path, imgcls, fake_worker):
    s = Stack(tmp_path / "stack", imgcls, fake_worker)
    yield s
    assert_clean_exit(s)


@pytest.fixture(scope="module")
def served(tmp_path_factory, imgcls, fake_worker):
    """One web tier with a fake worker, shared by the tests that do not stop or reconfigure it."""
    s = Stack(tmp_path_factory.mktemp("served"), imgcls, fake_worker)
    s.start_web(max_body=1 << 20, threads=2).start_worker()
    yield s
    assert_clean_exit(s)


def post_file(url: str, path: Path, **kw) -> requests.Response:
    """Exactly what the assignment's client does."""
    with open(path, "rb") as f:
        return requests.post(url, files={"myfile": f}, timeout=60, **kw)


def raw_http(port: int, request: bytes) -> tuple[int, str]:
    """Sends bytes as they are and reads one response (for requests no HTTP library would send)."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as sock:
        sock.sendall(request)
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        return resp.status, resp.read().decode(errors="replace")


def assert_still_serving(s: Stack, tmp_path: Path):
    p = tmp_path / "still_ok.jpg"
    p.write_bytes(b"still serving")
    r = post_file(s.url, p)
    assert r.status_code == 200 and r.text == echo_label("still_ok.jpg", b"still serving")


# ---- the assignment's protocol ----


def test_hundred_assignment_clients_at_once_each_get_their_own_label(served, tmp_path):
    n = 100
    paths = []
    for i in range(n):
        p = tmp_path / f"test_{i}.JPEG"
        p.write_bytes(os.urandom(64 + i * 37))
        paths.append(p)
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def client(i):
        barrier.wait()
        try:
            results[i] = post_file(served.url, paths[i])
        except Exception as e:  # reported below with its index
            results[i] = e

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, r in enumerate(results):
        assert isinstance(r, requests.Response), f"client {i}: {r!r}"
        assert r.status_code == 200, f"client {i}: {r.status_code} {r.text}"
        assert r.headers["Content-Type"] == "text/plain"
        assert r.text == echo_label(paths[i].name, paths[i].read_bytes()), f"client {i} got another's answer"
    # The assignment's bucket layout: every input under its own name.
    for p in paths:
        assert (served.in_dir / p.name).read_bytes() == p.read_bytes()


def test_label_with_spaces_is_the_whole_body(stack, tmp_path):
    stack.start_web().start_worker(label="tile roof")
    p = tmp_path / "roof.jpg"
    p.write_bytes(b"\xff\xd8 a roof")
    r = post_file(stack.url, p)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/plain"
    assert r.text == "tile roof"


def test_json_form(served, tmp_path):
    p = tmp_path / "dog.jpg"
    p.write_bytes(b"a dog, allegedly")
    r = post_file(served.url, p, headers={"Accept": "application/json"})
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    obj = r.json()
    assert set(obj) >= {"id", "file", "label", "index", "prob", "top", "ms"}
    assert re.fullmatch(r"[0-9a-f]{32}", obj["id"])
    assert obj["file"] == "dog.jpg"
    assert obj["label"] == echo_label("dog.jpg", p.read_bytes())
    assert len(obj["top"]) == 5
    assert obj["top"][0] == {"label": obj["label"], "index": obj["index"], "prob": obj["prob"]}
    assert set(obj["ms"]) >= {"receive", "store", "send", "queue", "fetch", "decode", "infer", "wait", "total"}
    # The same result is kept under its id.
    again = requests.get(served.url + "results/" + obj["id"], headers={"Accept": "application/json"}, timeout=10)
    assert again.status_code == 200 and again.json()["label"] == obj["label"]
    text = requests.get(served.url + "results/" + obj["id"], timeout=10)
    assert text.status_code == 200 and text.text == obj["label"]


def test_large_image_goes_by_claim_check_and_same_names_never_mix(served, tmp_path):
    # Two different images under one name, at once, both over the inline limit (180 KiB).
    a, b = os.urandom(200_000), os.urandom(250_000)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    pa, pb = tmp_path / "a" / "same.jpg", tmp_path / "b" / "same.jpg"
    pa.write_bytes(a)
    pb.write_bytes(b)
    out = {}

    def send(key, path):
        out[key] = post_file(served.url, path, headers={"Accept": "application/json"})

    ts = [threading.Thread(target=send, args=("a", pa)), threading.Thread(target=send, args=("b", pb))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert out["a"].status_code == 200 and out["b"].status_code == 200
    assert out["a"].json()["label"] == echo_label("same.jpg", a)
    assert out["b"].json()["label"] == echo_label("same.jpg", b)
    # Each claim check was its own key (the fake worker leaves them, the real one removes them); the
    # name holds one of the two.
    assert (served.in_dir / ".imgcls" / "claims" / out["a"].json()["id"]).read_bytes() == a
    assert (served.in_dir / ".imgcls" / "claims" / out["b"].json()["id"]).read_bytes() == b
    assert (served.in_dir / "same.jpg").read_bytes() in (a, b)


@pytest.mark.parametrize("code,status", [("EFORMAT", 422), ("ETOOBIG", 413)])
def test_worker_errors_map_to_statuses(served, tmp_path, code, status):
    p = tmp_path / "bad.jpg"
    p.write_bytes(code.encode() + b" not an image")
    r = post_file(served.url, p)
    assert r.status_code == status
    assert r.headers["Content-Type"] == "text/plain"
    assert f"fake {code}" in r.text
    j = post_file(served.url, p, headers={"Accept": "application/json"}).json()
    assert j["status"] == status and j["error"]["code"] == code and re.fullmatch(r"[0-9a-f]{32}", j["id"])


# ---- bad requests ----


def _mp(boundary: str, *parts: bytes) -> bytes:
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


def _part(boundary: str, disposition: str, data: bytes) -> bytes:
    return f"--{boundary}\r\nContent-Disposition: form-data; {disposition}\r\n\r\n".encode() + data + b"\r\n"


def _raw_name(name: bytes) -> dict:
    """A multipart upload whose part's filename is exactly these bytes."""
    body = (b"--XyZ\r\nContent-Disposition: form-data; name=\"myfile\"; filename=\"" + name + b"\"\r\n\r\nabc\r\n"
            b"--XyZ--\r\n")
    return dict(data=body, headers={"Content-Type": "multipart/form-data; boundary=XyZ"})


BAD_REQUESTS = {
    # id: (how to send it, status, words the message must contain)
    "missing_field": (dict(files={"note": (None, "hello")}), 400, "missing field myfile"),
    "wrong_field_name": (dict(files={"file": ("a.jpg", b"abc")}), 400, "missing field myfile"),
    "empty_file": (dict(files={"myfile": ("a.jpg", b"")}), 400, "empty file"),
    "no_filename": (dict(files={"myfile": (None, b"abc")}), 400, "bad file name"),
    "not_multipart": (dict(data=b"just bytes", headers={"Content-Type": "application/octet-stream"}), 400,
                      "not multipart"),
    "urlencoded": (dict(data={"myfile": "abc"}), 400, "not multipart"),
    "no_boundary": (dict(data=b"x", headers={"Content-Type": "multipart/form-data"}), 400, "malformed multipart"),
    "garbage_multipart": (dict(data=b"this is not multipart at all",
                               headers={"Content-Type": "multipart/form-data; boundary=XyZ"}), 400,
                          "malformed multipart"),
    "truncated_multipart": (dict(data=_part("XyZ", 'name="myfile"; filename="a.jpg"', b"abc")[:-2],
                                 headers={"Content-Type": "multipart/form-data; boundary=XyZ"}), 400,
                            "malformed multipart"),
    "two_files": (dict(data=_mp("XyZ", _part("XyZ", 'name="myfile"; filename="a.jpg"', b"abc"),
                                _part("XyZ", 'name="myfile"; filename="b.jpg"', b"def")),
                       headers={"Content-Type": "multipart/form-data; boundary=XyZ"}), 400, "more than one file"),
    "too_long": (dict(files={"myfile": ("a" * 252 + ".jpg", b"abc")}), 400, "longer than 255 bytes"),
    "dot": (_raw_name(b"."), 400, "'.' or '..'"),
    "path_to_nothing": (_raw_name(b"C:\\Users\\"), 400, "the file name is empty"),
    "control_char": (_raw_name(b"a\x01b.jpg"), 400, "control character"),
    "tab": (_raw_name(b"a\tb.jpg"), 400, "control character"),
    "delete_char": (_raw_name(b"a\x7fb.jpg"), 400, "control character"),
    "latin1": (_raw_name(b"caf\xe9.jpg"), 400, "not valid UTF-8"),
    "nul": (_raw_name(b"a\x00b.jpg"), 400, "NUL byte"),
    "overlong_slash": (_raw_name(b"a\xc0\xafb.jpg"), 400, "not valid UTF-8"),
    "lone_continuation": (_raw_name(b"\x80.jpg"), 400, "not valid UTF-8"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS), ids=list(BAD_REQUESTS))
def test_bad_upload_is_refused_with_its_reason(served, tmp_path, case):
    kwargs, status, words = BAD_REQUESTS[case]
    r = requests.post(served.url, timeout=30, **kwargs)
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"] == "text/plain"
    assert words in r.text
    assert_still_serving(served, tmp_path)


def test_errors_are_json_when_asked(served):
    r = requests.post(served.url, files={"file": ("a.jpg", b"abc")}, headers={"Accept": "application/json"},
                      timeout=30)
    assert r.status_code == 400 and r.headers["Content-Type"] == "application/json"
    assert "missing field myfile" in r.json()["error"]["message"] and r.json()["status"] == 400


def test_the_longest_name_is_accepted(served):
    name = "a" * 251 + ".jpg"
    r = requests.post(served.url, files={"myfile": (name, b"abc")}, headers={"Accept": "application/json"},
                      timeout=30)
    assert r.status_code == 200 and r.json()["file"] == name
    assert (served.in_dir / name).read_bytes() == b"abc"


# The names people's phones and desktops give their files, sent as raw bytes (what a browser sends),
# and what the service calls them: the name as sent, or the last component of a path.
REAL_NAMES = [
    ("my photo.jpg", "my photo.jpg"),
    ("IMG_2041 (1).JPG", "IMG_2041 (1).JPG"),
    ("café.jpg", "café.jpg"),
    ("a+b.jpg", "a+b.jpg"),
    ("#1 100%.png", "#1 100%.png"),
    ("猫の写真.jpg", "猫の写真.jpg"),
    ("🐈 cat.png", "🐈 cat.png"),
    ("README", "README"),
    ("archive.tar.gz", "archive.tar.gz"),
    (".hidden", ".hidden"),
    ("%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd"),
    ("C:\\Users\\me\\cat.jpg", "cat.jpg"),
    ("../../etc/passwd", "passwd"),
]


@pytest.mark.parametrize("raw,name", REAL_NAMES, ids=[n for n, _ in REAL_NAMES])
def test_real_file_names_are_kept(served, raw, name):
    kwargs = _raw_name(raw.encode())
    r = requests.post(served.url, timeout=30, **kwargs)
    assert r.status_code == 200, r.text
    # the name travelled unchanged in the request message (the fake worker echoes it as the label)
    assert r.content.decode() == echo_label(name, b"abc")
    j = requests.post(served.url, timeout=30, data=kwargs["data"],
                      headers={**kwargs["headers"], "Accept": "application/json"}).json()
    assert j["file"] == name
    stored = requests.get(f"{served.url}results/{j['id']}", headers={"Accept": "application/json"}, timeout=10)
    assert stored.json()["file"] == name
    # The directory store's mapping: one file for the name, never starting with '.', holding the image.
    disk = name.replace("%", "%25")
    disk = "%2E" + disk[1:] if disk.startswith(".") else disk
    assert (served.in_dir / disk).read_bytes() == b"abc"
    assert not (served.in_dir / ".." / "passwd").exists()


@pytest.mark.parametrize("method,path,status", [
    ("GET", "nope", 404), ("GET", "results", 404), ("PUT", "", 405), ("GET", "", 405), ("DELETE", "healthz", 405),
    ("POST", "metrics", 405), ("GET", "results/not-an-id", 400), ("GET", "results/" + "0" * 32, 404),
])
def test_routes_and_methods(served, tmp_path, method, path, status):
    r = requests.request(method, served.url + path, data=b"x" if method in ("PUT", "POST") else None, timeout=30)
    assert r.status_code == status
    assert r.text.strip(), "errors name the problem"
    assert_still_serving(served, tmp_path)


def test_body_over_max_body(stack, tmp_path):
    stack.start_web(max_body=4096).start_worker()
    head = ("POST / HTTP/1.1\r\nHost: t\r\nContent-Type: multipart/form-data; boundary=XyZ\r\n"
            "Content-Length: {}\r\n\r\n")
    # Refused from Content-Length alone, before a byte of the body is sent.
    status, body = raw_http(stack.port, head.format(1_000_000).encode())
    assert status == 413 and "limit" in body
    # The way a client sends it: requests with a file over the limit.
    r = requests.post(stack.url, files={"myfile": ("big.jpg", b"x" * 5000)}, timeout=30)
    assert r.status_code == 413 and "limit" in r.text
    # No Content-Length (chunked): refused once the streamed body passes the limit.
    data = _mp("XyZ", _part("XyZ", 'name="myfile"; filename="big.jpg"', b"y" * 6000))

    def chunks():
        for i in range(0, len(data), 1000):
            yield data[i:i + 1000]

    r = requests.post(stack.url, data=chunks(), headers={"Content-Type": "multipart/form-data; boundary=XyZ"},
                      timeout=30)
    assert r.status_code == 413 and "limit" in r.text
    # Just under the limit is fine.
    ok = tmp_path / "fits.jpg"
    ok.write_bytes(b"z" * 3000)
    r = post_file(stack.url, ok)
    assert r.status_code == 200 and r.text == echo_label("fits.jpg", ok.read_bytes())


# ---- waiting: timeout, overload, shutdown ----


def test_timeout_gives_504_with_id_and_the_result_comes_later(stack, tmp_path):
    stack.start_web(timeout=2)  # no worker yet
    p = tmp_path / "late.jpg"
    p.write_bytes(b"late image")
    r = post_file(stack.url, p)
    assert r.status_code == 504
    m = re.fullmatch(r"timed out waiting for a worker; id=([0-9a-f]{32}); GET /results/\1 later\n", r.text)
    assert m, r.text
    rid = m.group(1)
    assert requests.get(stack.url + "results/" + rid, timeout=10).status_code == 404
    stack.start_worker()
    got = wait_for(lambda: (lambda x: x if x.status_code == 200 else None)(
        requests.get(stack.url + "results/" + rid, timeout=10)), "the late result")
    assert got.text == echo_label("late.jpg", b"late image")
    # Its answer reached the web tier after the client was gone: deleted and logged.
    wait_for(lambda: f"event=unmatched_response id={rid}" in stack.log(), "the unmatched answer to be logged")


def _post_in_thread(url, path, out, key):
    def run():
        try:
            out[key] = post_file(url, path)
        except Exception as e:  # the assertion below shows it
            out[key] = e
    t = threading.Thread(target=run)
    t.start()
    return t


def _waiting(stack) -> int:
    return requests.get(stack.url + "healthz", timeout=10).json()["waiting"]


def test_more_than_max_waiting_gets_503_and_shutdown_answers_the_waiting(stack, tmp_path):
    stack.start_web(max_waiting=2, timeout=120)  # no worker: requests wait
    p = tmp_path / "wait.jpg"
    p.write_bytes(b"waiting")
    out = {}
    threads = [_post_in_thread(stack.url, p, out, i) for i in range(2)]
    wait_for(lambda: _waiting(stack) == 2, "two requests to wait")
    r = post_file(stack.url, p)
    assert r.status_code == 503 and "overloaded" in r.text
    assert stack.stop_web(signal.SIGTERM) == 0, stack.log()
    for t in threads:
        t.join(timeout=WAIT_S)
    for i in range(2):
        assert isinstance(out[i], requests.Response), out[i]
        assert out[i].status_code == 503 and "shutting down" in out[i].text


@pytest.mark.slow
def test_a_thousand_requests_wait_without_a_thread_each(stack):
    import resource

    n = 1000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 500), hard))
    stack.start_web(timeout=120)  # no worker yet: every request waits
    socks = []
    try:
        for i in range(n):
            sock = socket.create_connection(("127.0.0.1", stack.port), timeout=WAIT_S * 3)
            data = _mp("bnd123", _part("bnd123", f'name="myfile"; filename="f{i}.jpg"', f"image {i}".encode()))
            sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Type: multipart/form-data; boundary=bnd123\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(data) + data)
            socks.append(sock)
        wait_for(lambda: _waiting(stack) == n, f"{n} requests to wait", timeout=WAIT_S * 3)
        threads = len(os.listdir(f"/proc/{stack.web.pid}/task"))
        assert threads < 16, f"{threads} threads for {n} waiting requests"
        stack.start_worker()
        for i, sock in enumerate(socks):
            resp = http.client.HTTPResponse(sock)
            resp.begin()
            body = resp.read()
            assert resp.status == 200 and body == echo_label(f"f{i}.jpg", f"image {i}".encode()).encode()
    finally:
        for sock in socks:
            sock.close()


def test_sigint_stops_cleanly(stack):
    stack.start_web()
    assert stack.stop_web(signal.SIGINT) == 0
    assert "event=stopped" in stack.log()


# ---- operations ----


def test_healthz(served):
    r = requests.get(served.url + "healthz", timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
    assert r.json() == {"status": "ok", "waiting": 0}


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"'
                    r'(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*)?\})? (\S+)$')


def parse_prometheus(text: str) -> dict:
    """A strict reader of the text format (0.0.4): returns {(name, labels): value} and checks TYPEs."""
    types, samples = {}, {}
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert kind in {"counter", "gauge", "histogram", "summary", "untyped"}
            assert name not in types, f"TYPE of {name} given twice"
            types[name] = kind
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        name, labels, value = m.group(1), m.group(3) or "", float(m.group(4))
        family = re.sub(r"_(bucket|sum|count|total)$", "", name)
        assert name in types or family in types, f"{name} has no TYPE"
        assert not math.isnan(value)
        samples[(name, labels)] = value
    return samples


def test_metrics_parse_and_count(served, tmp_path):
    before = parse_prometheus(requests.get(served.url + "metrics", timeout=10).text)
    p = tmp_path / "m.jpg"
    p.write_bytes(b"metrics")
    for _ in range(3):
        assert post_file(served.url, p).status_code == 200
    assert requests.get(served.url + "nope", timeout=10).status_code == 404
    r = requests.get(served.url + "metrics", timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    after = parse_prometheus(r.text)
    ok = ("imgcls_http_requests_total", 'status="200"')
    assert after[ok] - before.get(ok, 0) >= 3
    assert after[("imgcls_http_requests_total", 'status="404"')] >= 1
    buckets = sorted(((float("inf") if k[1] == 'le="+Inf"' else float(k[1][4:-1])), v)
                     for k, v in after.items() if k[0] == "imgcls_http_request_duration_seconds_bucket")
    assert [v for _, v in buckets] == sorted(v for _, v in buckets), "buckets are cumulative"
    assert buckets[-1] == (float("inf"), after[("imgcls_http_request_duration_seconds_count", "")])
    assert after[("imgcls_http_request_duration_seconds_sum", "")] > 0
    assert ("imgcls_queue_depth", 'state="visible"') in after
    assert ("imgcls_queue_depth", 'state="in_flight"') in after
    assert after[("imgcls_requests_waiting", "")] >= 0


def test_queue_depth_shows_requests_nobody_took(stack, tmp_path):
    stack.start_web(timeout=1)  # no worker
    p = tmp_path / "q.jpg"
    p.write_bytes(b"queued")
    assert post_file(stack.url, p).status_code == 504
    m = parse_prometheus(requests.get(stack.url + "metrics", timeout=10).text)
    assert m[("imgcls_queue_depth", 'state="visible"')] == 1
    assert m[("imgcls_http_requests_total", 'status="504"')] == 1


def test_required_options_are_named(imgcls):
    r = subprocess.run([imgcls, "web", "--port", "0"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "--queue is required" in r.stderr
    r = subprocess.run([imgcls, "web", "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "--reply-queue" in r.stdout and "IMGCLS_MAX_WAITING" in r.stdout

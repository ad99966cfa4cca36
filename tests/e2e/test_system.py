"""The whole local system, as `imgcls up` runs it, driven the way the original assignment's client did.

One `imgcls up` (web tier, SQLite queues, bucket directories, 2 workers) per module; tests poll for
conditions with timeouts and never sleep to wait.
"""

from __future__ import annotations

import concurrent.futures
import io
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests
from PIL import Image

from conftest import PHOTOS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def wait_healthy(url: str, what: str):
    def healthy():
        try:
            return requests.get(url + "healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    wait_for(healthy, what=what)


def children_of(pid: int) -> list[tuple[int, str]]:
    out = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [(int(line.split(None, 1)[0]), line.split(None, 1)[1]) for line in out.splitlines() if line.strip()]


class System:
    def __init__(self, imgcls: Path, tmp: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.data = tmp / "data"
        self.log = open(tmp / "up.log", "w")
        self.proc = subprocess.Popen([imgcls, "up", "--port", str(self.port), "--data-dir", self.data,
                                      "--min-workers", "2", "--max-workers", "2", "--visibility", "4"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        wait_healthy(self.url, "imgcls up to answer /healthz")

    def workers(self) -> list[int]:
        return [pid for pid, args in children_of(self.proc.pid) if " worker " in f" {args} "]

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        rc = self.proc.wait(timeout=30)
        self.log.close()
        return rc


@pytest.fixture(scope="module")
def system(imgcls, tmp_path_factory):
    s = System(imgcls, tmp_path_factory.mktemp("up"))
    yield s
    if s.proc.poll() is None:
        s.stop()


@pytest.fixture(scope="module")
def images(tmp_path_factory, photos) -> list[Path]:
    """100 files named like the assignment's (test_0.JPEG ...), cycling through the real photos."""
    d = tmp_path_factory.mktemp("images")
    sources = [p for p, _ in photos.values()]
    out = []
    for i in range(100):
        img = Image.open(sources[i % len(sources)]).convert("RGB")
        if i >= len(sources):  # vary the pixels, so that no two uploads are the same bytes
            img = img.rotate((i % 7) - 3)
        path = d / f"test_{i}.JPEG"
        img.save(path, "JPEG", quality=90)
        out.append(path)
    return out


@pytest.fixture(scope="module")
def expected(imgcls, images) -> dict[str, str]:
    r = subprocess.run([imgcls, "classify", *images], capture_output=True, text=True, check=True)
    return dict(line.split(":", 1) for line in r.stdout.splitlines())


def post(url: str, path: Path, **kw) -> requests.Response:
    with open(path, "rb") as f:  # exactly what the assignment's client sends
        return requests.post(url, files={"myfile": f}, timeout=120, **kw)


def test_100_concurrent_clients_get_what_classify_says(system, images, expected):
    with concurrent.futures.ThreadPoolExecutor(100) as pool:
        answers = list(pool.map(lambda p: post(system.url, p), images))
    for path, r in zip(images, answers):
        assert r.status_code == 200, r.text
        assert r.headers["Content-Type"].startswith("text/plain")
        assert r.text == expected[path.stem], path.name


def test_buckets_hold_the_assignment_layout(system, images, expected):
    for path in images[:10]:
        assert post(system.url, path).status_code == 200
        assert (system.data / "in" / path.name).read_bytes() == path.read_bytes()
        assert (system.data / "out" / path.stem).read_text() == f"({path.stem}, {expected[path.stem]})"


def test_metrics_say_which_engine_answered(system, images, imgcls):
    """/metrics counts answers by the engine that computed them, as the workers report it: the same
    runtime, ISA and precision `imgcls classify --json` reports on this machine."""
    info = json.loads(subprocess.run([imgcls, "classify", "--json", images[0]], capture_output=True, text=True,
                                     check=True).stdout.splitlines()[0])["engine"]
    engine = f'{info["runtime"]}/{info["isa"]}/{info["precision"]}/1'  # up's workers run 1 thread
    before = requests.get(system.url + "metrics", timeout=10).text
    def count(text):
        line = next((x for x in text.splitlines() if x.startswith(f'imgcls_answers_by_engine_total{{engine="{engine}"}}')),
                    None)
        return int(line.split()[-1]) if line else 0
    for path in images[:3]:
        assert post(system.url, path).status_code == 200
    after = requests.get(system.url + "metrics", timeout=10).text
    assert count(after) == count(before) + 3, after


def test_json_answer_and_stored_result(system, images, expected):
    r = post(system.url, images[3], headers={"Accept": "application/json"})
    assert r.status_code == 200
    body = r.json()
    assert body["file"] == images[3].name and body["label"] == expected[images[3].stem]
    assert len(body["top"]) == 5 and body["top"][0]["label"] == body["label"]
    stored = requests.get(f"{system.url}results/{body['id']}", headers={"Accept": "application/json"}, timeout=10)
    assert stored.status_code == 200 and stored.json()["label"] == body["label"]
    assert (system.data / "out" / ".imgcls" / "results" / f"{body['id']}.json").exists()


def test_same_name_different_images_never_mix(system, tmp_path, photos, imgcls):
    a, b = tmp_path / "a" / "same.jpg", tmp_path / "b" / "same.jpg"
    for p, src in ((a, photos["eagle"][0]), (b, photos["chelsea"][0])):
        p.parent.mkdir()
        Image.open(src).convert("RGB").save(p, "JPEG")
    want = [subprocess.run([imgcls, "classify", p], capture_output=True, text=True).stdout.split(":", 1)[1].strip()
            for p in (a, b)]
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        got = list(pool.map(lambda p: post(system.url, p).text, [a, b] * 10))
    assert got == want * 10


def test_undecodable_image_gets_a_4xx_with_the_reason(system, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not a whole JPEG")
    r = post(system.url, bad)
    assert r.status_code in (415, 422) and r.text.strip()


def in_flight(system) -> int:
    metrics = requests.get(system.url + "metrics", timeout=5).text
    line = next(m for m in metrics.splitlines() if m.startswith('imgcls_queue_depth{state="in_flight"}'))
    return int(float(line.split()[-1]))


def test_killed_workers_lose_no_request(system, images, expected):
    big = images[:40]
    with concurrent.futures.ThreadPoolExecutor(40) as pool:
        futures = [pool.submit(post, system.url, p) for p in big]
        # Kill every worker while requests are received but not answered: those requests were never
        # deleted, so when their visibility runs out the restarted workers get them again.
        wait_for(lambda: in_flight(system) > 0, what="requests in flight")
        victims = system.workers()
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        answers = [f.result() for f in futures]
    for path, r in zip(big, answers):
        assert r.status_code == 200, r.text
        assert r.text == expected[path.stem]
    wait_for(lambda: len(system.workers()) == 2 and not set(victims) & set(system.workers()),
             what="the workers restarted")


def test_ctrl_c_stops_everything(imgcls, tmp_path):
    s = System(imgcls, tmp_path)
    kids = [pid for pid, _ in children_of(s.proc.pid)]
    assert len(kids) == 4  # web, scaler, 2 workers
    assert s.stop() == 0
    for pid in kids:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()


def queue_tool(*args, stdin=b"") -> str:
    from conftest import BUILD

    return subprocess.run([BUILD / "queue_tool", *map(str, args)], input=stdin, capture_output=True, check=True
                          ).stdout.decode()


def test_poison_message_goes_to_the_dead_letter_queue(system, images, expected):
    db = system.data.resolve() / "imgcls.db"
    queue_tool("send", f"sqlite://{db}?queue=requests&sync=normal", stdin=b'{"v":1,"id":"not a request"')
    dlq = f"sqlite://{db}?queue=requests-dlq&sync=normal"
    wait_for(lambda: queue_tool("depth", dlq).split()[0] == "1", what="the poison message in the dead-letter queue")
    assert post(system.url, images[0]).text == expected[images[0].stem]  # and the system still serves

"""No client, and no message on the queue, can break the service ([robustness]).

- The bucket layout: the client's names and the system's keys never meet, whatever the names.
- File names as people have them, end to end through a real worker.
- Permanent failures are answered at once and deleted; temporary ones are retried and then answered.
- Forged queue messages cannot overwrite another request's result or escape the buckets.
- The fault sweep: fail the Nth store or queue call of one process, for every N over the calls a
  request makes and each error kind; every request is answered with its label or a clear error.

The web tier and the workers are started directly (not through `imgcls up`) so that each test can wrap
one of their backends in a fault: URL.
"""

from __future__ import annotations

import concurrent.futures
import io
import json
import os
import subprocess
from pathlib import Path

import pytest
import requests
from PIL import Image

from stack import Stack
from test_system import wait_for

ID_RE = r"[0-9a-f]{32}"


def multipart(name: bytes, data: bytes) -> dict:
    """requests.post kwargs for an upload whose part's filename is exactly these bytes, as browsers send."""
    body = (b"--BnD\r\nContent-Disposition: form-data; name=\"myfile\"; filename=\"" + name + b"\"\r\n"
            b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n--BnD--\r\n")
    return dict(data=body, headers={"Content-Type": "multipart/form-data; boundary=BnD"})


def upload(url: str, name: str, data: bytes, json_answer=False, timeout=120) -> requests.Response:
    kw = multipart(name.encode(), data)
    if json_answer:
        kw["headers"]["Accept"] = "application/json"
    return requests.post(url, timeout=timeout, **kw)


def disk_name(name: str) -> str:
    """The directory store's file for a name key (src/store/store_file.c)."""
    enc = name.replace("%", "%25")
    return "%2E" + enc[1:] if enc.startswith(".") else enc


@pytest.fixture
def stack(imgcls, tmp_path):
    s = Stack(imgcls, tmp_path)
    yield s
    s.stop()


def classify(imgcls: Path, path: Path, *args: str) -> str:
    r = subprocess.run([imgcls, "classify", *args, path], capture_output=True, text=True, check=True)
    return r.stdout.strip().split(":", 1)[1]


@pytest.fixture(scope="module")
def small_and_large(imgcls, photos, tmp_path_factory):
    """A small photo (inline in the message) and a large one (over the 32 KiB inline limit: claim check),
    with the labels `imgcls classify` gives them."""
    d = tmp_path_factory.mktemp("photos")
    small = d / "small.jpg"
    Image.open(photos["dog"][0]).convert("RGB").resize((160, 120)).save(small, "JPEG", quality=85)
    large = Path(photos["chelsea"][0])
    assert small.stat().st_size < 32 * 1024 < large.stat().st_size
    return (small.read_bytes(), classify(imgcls, small)), (large.read_bytes(), classify(imgcls, large))


# ---- 1. the bucket layout ----

# The names the last review found breaking the service, and the names of the system's own prefixes.
COLLIDING_NAMES = ["results", "results.jpg", "requests", "requests.png", ".imgcls", ".imgcls.jpg", "claims",
                   "claims.png", "results.json", "%2Eimgcls"]


def test_names_of_system_keys_are_answered_and_stored_as_the_assignment_says(stack, small_and_large):
    (small, small_label), (large, large_label) = small_and_large
    stack.worker()
    for data, label in ((small, small_label), (large, large_label)):
        for name in COLLIDING_NAMES:
            r = upload(stack.url, name, data, timeout=30)
            assert r.status_code == 200 and r.text == label, (name, r.status_code, r.text)
            # The assignment's objects: the image under its name, "(stem, label)" under the stem.
            assert (stack.data / "in" / disk_name(name)).read_bytes() == data
            stem = name.rsplit(".", 1)[0] if "." in name[1:] else name
            assert (stack.data / "out" / disk_name(stem)).read_text() == f"({stem}, {label})"
        # A large photo after all of them (the upload that once broke every later one).
        r = upload(stack.url, "after.jpg", large, timeout=30)
        assert r.status_code == 200 and r.text == large_label
    # Every claim check is removed once its request is answered.
    wait_for(lambda: stack.claims() == [], what="the claim checks to be removed")
    # The system's own records sit apart: one per request.
    assert len(stack.records()) == 2 * (len(COLLIDING_NAMES) + 1)


REAL_NAMES = ["my photo.jpg", "IMG_2041 (1).JPG", "café.jpg", "a+b.jpg", "#1 100%.jpg", "写真.jpeg", "🐈.jpg",
              "no extension", "several.dots.in.it.jpg", "quote\".jpg"]


def test_real_file_names_end_to_end(stack, small_and_large):
    (small, label), _ = small_and_large
    stack.worker()
    for name in REAL_NAMES:
        sent = name.replace('"', "%22")  # how browsers send a quote inside filename="..."
        r = upload(stack.url, sent, small, json_answer=True, timeout=30)
        assert r.status_code == 200, (name, r.text)
        body = r.json()
        assert body["file"] == sent and body["label"] == label
        stored = requests.get(f"{stack.url}results/{body['id']}", headers={"Accept": "application/json"}, timeout=10)
        assert stored.json()["file"] == sent
        stem = sent.rsplit(".", 1)[0] if "." in sent else sent
        assert (stack.data / "out" / disk_name(stem)).read_text() == f"({stem}, {label})"
    # Nothing was written outside the two buckets.
    assert sorted(p.name for p in stack.data.iterdir() if not p.name.startswith("imgcls.db")) == ["in", "out"]


# ---- 3. permanent failures at once, temporary ones retried ----


def one_request_was_received_once(stack, worker, rid: str) -> bool:
    return stack.log(worker).count(f"id={rid}") == 1 and stack.depth("requests") == (0, 0)


@pytest.mark.parametrize("size", [(2400, 1800), (1000, 1000)], ids=["pixel_limit", "network_limit"])
def test_an_image_over_the_memory_limit_is_refused_at_once(stack, tmp_path, size):
    # Reference mode runs the network at the image's own size. With 16 MiB a 4.3 MP image is refused from
    # its header (16 bytes a pixel); a 1 MP one passes that check but its activations do not fit.
    w = stack.worker("--preprocess", "reference", "--max-image-mb", "16")
    buf = io.BytesIO()
    Image.new("RGB", size, (120, 80, 40)).save(buf, "JPEG")
    r = upload(stack.url, "huge.jpg", buf.getvalue(), json_answer=True, timeout=30)
    assert r.status_code == 413, r.text
    assert "limit" in r.json()["error"]["message"] and "max-image-mb" in r.json()["error"]["message"]
    rid = r.json()["id"]
    wait_for(lambda: one_request_was_received_once(stack, w, rid), what="the request deleted after one delivery")
    assert stack.depth("requests-dlq") == (0, 0)
    assert w.poll() is None  # and the worker is alive


def test_a_missing_claim_check_is_answered_with_an_error_at_once(stack):
    w = stack.worker()
    rid = "ab" * 16
    stack.send_raw(json.dumps({"v": 1, "id": rid, "file": "gone.jpg", "reply_to": stack.replies,
                               "image_key": f".imgcls/claims/{rid}"}).encode())
    wait_for(lambda: (stack.data / "out" / ".imgcls" / "results" / f"{rid}.json").exists(), what="an error result")
    assert stack.record(rid)["error"]["code"] == "ENOTFOUND"
    wait_for(lambda: one_request_was_received_once(stack, w, rid), what="the request deleted after one delivery")
    assert stack.depth("requests-dlq") == (0, 0)


def test_temporary_store_failures_are_retried_and_answered(stack, small_and_large):
    _, (large, label) = small_and_large
    # The claim's first fetch fails, then the first output write: each is retried after a backoff.
    w = stack.worker(in_url=f"fault:{stack.in_url}#op=get&fail=1&code=EIO",
                     out_url=f"fault:{stack.out_url}#op=put&fail=1&code=ETIMEDOUT")
    r = upload(stack.url, "cat.png", large, timeout=60)
    assert r.status_code == 200 and r.text == label
    log = stack.log(w)
    assert "fetch_failed" in log and "output_write_failed" in log
    wait_for(lambda: stack.depth("requests") == (0, 0), what="the request deleted")


# ---- 4. forged messages ----


def test_forged_messages_cannot_overwrite_results_or_escape(stack, small_and_large, tmp_path):
    import base64

    (small, label), (large, _) = small_and_large
    other = io.BytesIO()  # another image, small enough to go inline
    Image.open(io.BytesIO(large)).convert("RGB").resize((150, 100)).save(other, "JPEG")
    stack.worker()
    r = upload(stack.url, "real.jpg", small, json_answer=True, timeout=30)
    assert r.status_code == 200
    real = r.json()["id"]
    before = (stack.data / "out" / ".imgcls" / "results" / f"{real}.json").read_bytes()

    def msg(**kw):
        m = {"v": 1, "id": "cd" * 16, "file": "forged.jpg", "reply_to": stack.replies,
             "image_b64": base64.b64encode(other.getvalue()).decode()}
        m.update(kw)
        return json.dumps({k: v for k, v in m.items() if v is not None}).encode()

    db = stack.db
    forged = [
        msg(id=real),  # another request's id, another image: replayed, never recomputed
        msg(reply_to=stack.queue),  # answers into the request queue itself
        msg(reply_to=f"sqlite://{tmp_path}/other.db?queue=responses&sync=normal"),  # a queue elsewhere
        msg(reply_to=f"sqlite://{db}?queue=responses&sync=off"),  # other parameters
        msg(reply_to=f"fault:sqlite://{db}?queue=responses&sync=normal"),
        msg(file="../../../escape.jpg"),
        msg(id="../../escape"),
        msg(image_b64=None, image_key="real.jpg"),  # a client's object as its image
        msg(image_b64=None, image_key=f".imgcls/results/{real}.json"),
    ]
    for body in forged:
        stack.send_raw(body)
    # The first is answered by replay; every other one is refused and dead-lettered.
    wait_for(lambda: stack.depth("requests-dlq")[0] == len(forged) - 1 and stack.depth("requests") == (0, 0),
             what="the forged messages dead-lettered", timeout=120)
    assert (stack.data / "out" / ".imgcls" / "results" / f"{real}.json").read_bytes() == before
    assert not (stack.data / "out" / "forged").exists()
    assert not list(tmp_path.rglob("escape*")) and not (tmp_path / "other.db").exists()
    stored = requests.get(f"{stack.url}results/{real}", timeout=10)
    assert stored.text == label


# ---- the heartbeat ----


@pytest.mark.slow
def test_a_stuck_batch_is_let_go(stack, tmp_path):
    # Reference mode at 1600x1200 takes well over a second an image; with --max-batch-s 1 the heartbeat
    # gives up on the batch of ten, and its messages go back to the queue while the worker is still busy.
    folder = tmp_path / "big"
    folder.mkdir()
    for i in range(10):
        Image.new("RGB", (1600, 1200), (20 * i, 100, 200 - 10 * i)).save(folder / f"big_{i}.jpg", "JPEG")
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        futures = [pool.submit(upload, stack.url, p.name, p.read_bytes()) for p in sorted(folder.iterdir())]
        wait_for(lambda: stack.depth("requests")[0] == 10, what="ten queued requests")
        w = stack.worker("--visibility", "3", "--max-batch-s", "1", "--preprocess", "reference")
        answers = [f.result() for f in futures]
    assert all(r.status_code == 200 for r in answers), [r.text for r in answers]
    assert "heartbeat_gave_up" in stack.log(w)


# ---- the fault sweep ----

CODES = ["EIO", "ETIMEDOUT", "EBACKEND"]
# (which process, which backend, the op whose Nth call fails, how many N): N runs over exactly the calls
# of that op that the two requests of a case make, so that every case injects its fault.
SWEEP = [
    ("worker", "in", "any", 3),        # the claim sweep at start, get claim, remove claim
    ("worker", "out", "any", 6),       # per request: look up its record, put (stem, label), put record
    ("worker", "queue", "delete", 2),  # the two deletes
    ("worker", "queue", "receive", 3), # long polls, every 200 ms
    ("web", "queue", "send", 2),       # the two request messages
    ("web", "in", "put", 3),           # named copy, claim check, named copy
]
SWEEP_CASES = [(who, be, op, n, code) for who, be, op, k in SWEEP for n in range(1, k + 1) for code in CODES]


@pytest.mark.slow
@pytest.mark.parametrize("who,backend,op,n,code", SWEEP_CASES,
                         ids=[f"{w}-{b}-{o}-{n}-{c}" for w, b, o, n, c in SWEEP_CASES])
def test_fault_sweep(imgcls, tmp_path, small_and_large, who, backend, op, n, code):
    (small, small_label), (large, large_label) = small_and_large
    rule = f"#op={op}&fail={n}&code={code}"
    web_kw = {}
    if who == "web":
        data = (tmp_path / "data").resolve()  # where Stack puts everything
        if backend == "queue":
            web_kw["web_queue"] = f"fault:sqlite://{data}/imgcls.db?queue=requests&sync=normal{rule}"
        else:
            web_kw["web_in"] = f"fault:file://{data}/in{rule}"
    s = Stack(imgcls, tmp_path, **web_kw, timeout=60)
    try:
        wkw = {}
        if who == "worker":
            url = {"in": s.in_url, "out": s.out_url, "queue": s.queue}[backend]
            wkw = {{"in": "in_url", "out": "out_url", "queue": "queue"}[backend]: f"fault:{url}{rule}"}
        # visibility 3 s: a message whose delete failed comes back soon and is replayed
        w = s.worker("--visibility", "3", **wkw)
        answers = [upload(s.url, "small.jpg", small, json_answer=True, timeout=90),
                   upload(s.url, "large.png", large, json_answer=True, timeout=90)]
        for r, label in zip(answers, (small_label, large_label)):
            # Answered with its label, or with a clear error that names the problem (never a 504: a
            # temporary failure is retried within seconds).
            if r.status_code == 200:
                assert r.json()["label"] == label
            else:
                assert r.status_code in (500, 503) and r.json()["error"]["message"], r.text
        # Nothing is lost or left behind: the queue drains (a failed delete is redelivered and replayed),
        # each answered request has exactly its own record, with the label its client got.
        wait_for(lambda: s.depth("requests") == (0, 0), what="the request queue to drain", timeout=60)
        assert s.depth("requests-dlq") == (0, 0)
        for r in answers:
            if r.status_code == 200:
                assert s.record(r.json()["id"])["label"] == r.json()["label"]
        assert w.poll() is None
        assert s.metric("imgcls_http_responses_unmatched_total") <= 1  # at most a replay of an answered request
    finally:
        s.stop()
    logs = "".join(p.read_text() for p in s.logs)
    assert "fault injected" in logs, "the case must inject its fault, or it proves nothing"
    report = os.environ.get("IMGCLS_FAULT_SWEEP_REPORT")
    if report:  # one line per case, for the closing note's counts
        with open(report, "a") as f:
            f.write(json.dumps({"case": f"{who}-{backend}-{op}-{n}-{code}", "injected": logs.count("fault injected"),
                                "statuses": [r.status_code for r in answers]}) + "\n")

"""Chaos run: 2,000 requests through `imgcls up` while a random child (a worker, or the web tier) is
killed with SIGKILL every second.

Afterwards:
- every request whose client stayed connected was answered 200 with the label `imgcls classify` gives;
- requests whose connection was cut (the web tier was killed under them) are counted as errors; a
  connection that was refused (the web tier was down) never sent a request, and the client tries again
  once the port answers;
- every request id that reached the queue (the web tier's `accepted id=` lines, which `up` passes on
  to its log) has exactly one result record in the output bucket.

The counts are printed (`pytest -s`) and written to chaos.txt beside the log. The request count is
IMGCLS_CHAOS_REQUESTS (default 2000). `up` runs with --backoff-max 1: every child is killed every 3 s
or so, faster than any backoff resets, so a growing backoff would leave the system down for most of
the run; this test is about losing nothing, test_up.py is about the backoff.
"""

from __future__ import annotations

import collections
import concurrent.futures
import io
import json
import os
import random
import re
import signal
import threading
import time
from pathlib import Path

import pytest
import requests
import urllib3

from up_harness import Up, alive, classify, mixed_photos, wait_for

pytestmark = pytest.mark.slow

REQUESTS = int(os.environ.get("IMGCLS_CHAOS_REQUESTS", "2000"))
CLIENTS = 8


@pytest.fixture(scope="module")
def chaos_images(tmp_path_factory, photos) -> list[Path]:
    return mixed_photos(tmp_path_factory.mktemp("chaos-images"), photos)


def refused(e: requests.ConnectionError) -> bool:
    """The connection was never made (nothing listening), as opposed to cut once it was."""
    reason = getattr(e.args[0], "reason", None) if e.args else None
    return isinstance(reason, urllib3.exceptions.NewConnectionError)


class Clients:
    def __init__(self, url: str, images: list[Path]):
        self.url, self.images = url, images
        self.bodies = {p: p.read_bytes() for p in images}
        self.lock = threading.Lock()
        self.results: list[tuple[str, str, int | None, str]] = []  # (file, outcome, status, text)
        self.refused = 0

    def one(self, i: int):
        path = self.images[i % len(self.images)]
        while True:
            try:
                r = requests.post(self.url, files={"myfile": (path.name, io.BytesIO(self.bodies[path]))},
                                  timeout=300)
                outcome = (path.stem, "answered", r.status_code, r.text)
                break
            except requests.ConnectionError as e:
                if not refused(e):
                    outcome = (path.stem, "cut", None, repr(e))
                    break
                with self.lock:
                    self.refused += 1
                wait_for(self.listening, timeout=120, what="the web tier back", every=0.02)
        with self.lock:
            self.results.append(outcome)

    def listening(self) -> bool:
        try:
            requests.get(self.url + "healthz", timeout=5)
            return True
        except requests.ConnectionError:
            return False


def chaos(u: Up, stop: threading.Event, kills: collections.Counter, rng: random.Random):
    """Every second, SIGKILL one running child: the web tier or a worker, chosen at random."""
    while not stop.wait(1.0):
        targets = [(role, pid) for role in ("web", "worker") for pid in u.running(role).values()]
        if not targets:
            continue
        role, pid = rng.choice(targets)
        try:
            os.kill(pid, signal.SIGKILL)
            kills[role] += 1
        except ProcessLookupError:
            pass


def records(out_bucket: Path) -> collections.Counter:
    """id -> how many result records (JSON files naming that id) the output bucket holds, wherever
    they are kept under it."""
    found = collections.Counter()
    for root, _, files in os.walk(out_bucket):
        for f in files:
            if not f.endswith(".json"):
                continue
            try:
                rec = json.loads((Path(root) / f).read_text())
            except (ValueError, OSError):
                continue  # being written: a later scan sees it whole
            if isinstance(rec, dict) and isinstance(rec.get("id"), str):
                found[rec["id"]] += 1
    return found


def test_chaos_kills_lose_nothing(imgcls, tmp_path, chaos_images):
    expected = classify(imgcls, chaos_images)
    u = Up(imgcls, tmp_path, "--visibility", "4", "--backoff-max", "1", workers=2)
    try:
        u.wait_ready()
        seed = int(os.environ.get("IMGCLS_CHAOS_SEED", "1"))
        kills, stop = collections.Counter(), threading.Event()
        killer = threading.Thread(target=chaos, args=(u, stop, kills, random.Random(seed)), daemon=True)
        clients = Clients(u.url, chaos_images)
        t0 = time.monotonic()
        killer.start()
        with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
            list(pool.map(clients.one, range(REQUESTS)))
        stop.set()
        killer.join()
        elapsed = time.monotonic() - t0

        # The queue drains once the fleet is whole again; then every accepted id has its record.
        accepted = set(re.findall(r"comp=web event=accepted id=(\w+)", u.log()))
        out = u.data / "out"
        wait_for(lambda: accepted <= set(records(out)), timeout=300, every=0.5,
                 what="a result record for every accepted request")
        held = records(out)
        lost_ids = sorted(i for i in accepted if held[i] != 1)

        answered = [x for x in clients.results if x[1] == "answered"]
        wrong = [x for x in answered if x[2] != 200 or x[3] != expected[x[0]]]
        errors = [x for x in clients.results if x[1] == "cut"]
        report = (f"chaos: requests={len(clients.results)} kills_worker={kills['worker']} kills_web={kills['web']} "
                  f"answered={len(answered) - len(wrong)} errors={len(errors)} refused_then_retried={clients.refused} "
                  f"accepted_ids={len(accepted)} records={len(held)} lost={len(wrong) + len(lost_ids)} "
                  f"seconds={elapsed:.0f} seed={seed}")
        print("\n" + report)
        (tmp_path / "chaos.txt").write_text(report + "\n")

        assert len(clients.results) == REQUESTS
        assert kills["worker"] > 0 and kills["web"] > 0, report
        assert not wrong, f"{report}\nnot answered right: {wrong[:5]}"
        assert not lost_ids, f"{report}\nids without exactly one record: {[(i, held[i]) for i in lost_ids[:5]]}"
        assert len(answered) > REQUESTS // 2, report  # the web tier was up for most of the run
        assert u.stop() == 0, u.log()[-3000:]
        assert not [pid for _, _, pid in u.started() if alive(pid)]
    finally:
        u.kill_everything()

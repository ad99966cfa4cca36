"""`imgcls up` scales its workers by load ([autoscaling] §6): out under a sustained load, back to the
minimum once the queue is empty, through many cycles without losing or duplicating a request, and with
the fleet's state on the web tier's /metrics.

The scale-in window is shortened through the environment (IMGCLS_SCALE_IN_WINDOW_S, read by the scaler
that `up` starts), so that a test sees several cycles in well under a minute.
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import threading
from pathlib import Path

import pytest
import requests

from up_harness import Up, classify, mixed_photos, wait_for


@pytest.fixture(scope="module")
def load_images(tmp_path_factory, photos) -> list[Path]:
    return mixed_photos(tmp_path_factory.mktemp("scale_photos"), photos)


@pytest.fixture(scope="module")
def labels(imgcls, load_images) -> dict[str, str]:
    return classify(imgcls, load_images)


def metrics(url: str) -> dict[str, float]:
    out = {}
    for line in requests.get(url + "metrics", timeout=10).text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def running(url: str) -> float:
    return metrics(url).get('imgcls_fleet_workers{state="running"}', -1)


def post(url: str, path: Path) -> requests.Response:
    with open(path, "rb") as f:
        return requests.post(url, files={"myfile": f}, timeout=120)


def load(u: Up, images: list[Path], n: int, clients: int) -> list[tuple[Path, requests.Response]]:
    """n requests from `clients` closed-loop clients: each sends its next image as soon as it has its answer."""
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        paths = [images[i % len(images)] for i in range(n)]
        return list(zip(paths, pool.map(lambda p: post(u.url, p), paths)))


def start_up(imgcls, tmp_path, window_s: int, *args: str) -> Up:
    env = {**os.environ, "IMGCLS_SCALE_IN_WINDOW_S": str(window_s)}
    u = Up(imgcls, tmp_path, *args, workers=(1, 3), env=env)
    u.wait_ready()
    return u


def test_sustained_load_grows_the_fleet_and_it_returns_to_the_minimum(imgcls, tmp_path, load_images, labels):
    u = start_up(imgcls, tmp_path, 3)
    try:
        wait_for(lambda: running(u.url) == 1, what="one worker running")
        m = metrics(u.url)
        for name in ('imgcls_fleet_workers{state="starting"}', 'imgcls_fleet_workers{state="stopping"}',
                     "imgcls_fleet_desired", 'imgcls_scaler_decisions_total{direction="out"}',
                     'imgcls_scaler_decisions_total{direction="in"}', 'imgcls_scaler_queue_depth{state="visible"}'):
            assert name in m, f"{name} is not on /metrics"
        seen = []
        stop = threading.Event()

        def watch():
            while not stop.is_set():
                seen.append(running(u.url))
                stop.wait(0.2)

        t = threading.Thread(target=watch)
        t.start()
        try:
            answers = load(u, load_images, 400, 24)
        finally:
            stop.set()
            t.join()
        for path, r in answers:
            assert r.status_code == 200 and r.text == labels[path.stem], (path.name, r.status_code, r.text)
        assert max(seen) > 1, "the fleet never grew"
        # the policy's reason: the drain rule ("backlog ... needs") or saturation ("all ... workers busy")
        assert re.search(r"comp=scaler event=scale direction=out .*reason=\"(backlog|all \d+ workers busy)", u.log())
        # After the load: back to one worker, through the scaler's decision, not a crash. (A worker asked
        # to stop no longer counts as running; it is gone once up has logged scaled_in.)
        wait_for(lambda: running(u.url) == 1 and metrics(u.url)["imgcls_fleet_desired"] == 1
                 and "event=scaled_in role=worker" in u.log(), timeout=60, what="the fleet back at the minimum")
        assert "event=restart role=worker" not in u.log()
    finally:
        assert u.stop() == 0


@pytest.mark.slow
def test_scale_in_cycles_lose_nothing_and_answer_once(imgcls, tmp_path, load_images, labels):
    u = start_up(imgcls, tmp_path, 1)
    try:
        total = 0
        for cycle in range(4):
            answers = load(u, load_images, 150, 24)
            total += len(answers)
            for path, r in answers:
                assert r.status_code == 200 and r.text == labels[path.stem], (cycle, path.name, r.text)
            wait_for(lambda: running(u.url) == 1 and metrics(u.url)["imgcls_fleet_desired"] == 1
                     and metrics(u.url)['imgcls_fleet_workers{state="stopping"}'] == 0, timeout=60,
                     what=f"cycle {cycle}: back at the minimum")
        log = u.log()
        assert len(re.findall(r"event=scaled_in role=worker", log)) >= 4
        # Every request answered exactly once: one result record per request, and no response that found
        # nobody waiting (a request answered twice would leave one).
        records = list((u.data / "out" / ".imgcls" / "results").iterdir())
        assert len(records) == total
        assert metrics(u.url)["imgcls_http_responses_unmatched_total"] == 0
    finally:
        assert u.stop() == 0

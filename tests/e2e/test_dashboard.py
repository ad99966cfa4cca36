"""GET /dashboard ([autoscaling] §5): the page a user watches while the fleet scales.

The fast test reads the page over HTTP (no browser): 200 text/html, the stable ids, no URL to any other
host, and a Content-Security-Policy whose hashes are those of the page's own script and style.

The browser test runs `imgcls up` (1 to 2 workers) under a closed-loop load and renders the page twice,
some seconds apart, in headless Chromium (Debian's `chromium`, installed by scripts/bootstrap.sh). Each
render uses --virtual-time-budget: Chromium runs the page's timers on a virtual clock, and waits for
each real fetch of /metrics against the real server before the clock moves on, so one render polls
/metrics about eight times in a second or two and --dump-dom then prints the DOM the script built. A
--log-net-log of every render shows what the page fetched. Virtual seconds pass faster than real ones,
so the rates a render shows are low: the test asserts that they are there and move, not their values.
"""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import json
import re
import shutil
import subprocess
import threading
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from stack import Stack
from up_harness import Up, wait_for

NUMBER_IDS = ("queue-visible", "queue-in-flight", "waiting", "workers-running", "workers-starting",
              "workers-stopping", "workers-desired", "throughput", "latency", "latency-mean")
LINE_IDS = ("line-queue-visible", "line-queue-in-flight", "line-workers-running", "line-workers-starting",
            "line-workers-desired", "line-throughput", "line-latency")
NUMBER = re.compile(r"^\d+(\.\d+)?$")


def test_dashboard_page_is_self_contained(imgcls, tmp_path):
    s = Stack(imgcls, tmp_path)
    try:
        r = requests.get(s.url + "dashboard", timeout=10)
        assert r.status_code == 200
        assert r.headers["Content-Type"] == "text/html; charset=utf-8"
        assert r.headers["Cache-Control"] == "no-store"
        page = r.text
        for i in (*NUMBER_IDS, *LINE_IDS, "chart", "status"):
            assert re.search(rf"""id=['"]{i}['"]""", page), f"no element with id {i}"
        # Nothing from another host: no absolute URL at all, and no protocol-relative one (//host/...).
        assert not re.search(r"https?:", page, re.I), re.search(r".{40}https?:.{40}", page, re.I)
        assert not re.search(r"""(src|href)\s*=\s*['"]?//""", page, re.I)
        # The CSP allows nothing but this page's own script and style (by hash) and fetches from itself.
        csp = dict(d.strip().split(" ", 1) for d in r.headers["Content-Security-Policy"].split(";"))
        assert csp["default-src"] == "'none'" and csp["connect-src"] == "'self'"
        for tag, directive in (("script", "script-src"), ("style", "style-src")):
            body = re.search(rf"<{tag}>(.*?)</{tag}>", page, re.S)[1]
            digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
            assert csp[directive] == f"'sha256-{digest}'", f"{directive} is not the hash of the {tag}"
        assert "unsafe" not in r.headers["Content-Security-Policy"]
        # It reads /metrics, the one source of truth, which carries the upload histogram it needs.
        assert "fetch('/metrics'" in page
        assert "imgcls_upload_duration_seconds_count" in requests.get(s.url + "metrics", timeout=10).text
        assert requests.head(s.url + "dashboard", timeout=10).status_code == 200
        assert requests.post(s.url + "dashboard", data=b"x", timeout=10).status_code == 405
    finally:
        s.stop()


class Dom(HTMLParser):
    """Text and attributes of every element that has an id, from a --dump-dom."""

    def __init__(self, html: str):
        super().__init__()
        self.attrs: dict[str, dict] = {}
        self.text: dict[str, str] = {}
        self._open: list[str | None] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.attrs[a["id"]] = a
            self.text[a["id"]] = ""
        if tag not in ("meta", "link", "br", "img", "input"):
            self._open.append(a.get("id"))

    def handle_endtag(self, tag):
        if self._open:
            self._open.pop()

    def handle_data(self, data):
        for i in self._open:
            if i is not None:
                self.text[i] += data


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.skip("chromium is not installed (scripts/bootstrap.sh installs Debian's chromium package): "
                    "the dashboard was not rendered in a browser")
    return path


def render(browser: str, url: str, out: Path) -> tuple[Dom, list[str], str]:
    """The DOM after about 8 virtual seconds of the page, the URLs the page itself requested, and
    Chromium's log (with the page's console messages)."""
    out.mkdir()
    netlog = out / "net.json"
    r = subprocess.run(
        [browser, "--headless", "--no-sandbox",  # no sandbox: tests run as root in containers
         "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--disable-extensions", f"--user-data-dir={out / 'profile'}",
         # Chromium's own background requests (updates, accounts) must not leave the machine either.
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
         f"--log-net-log={netlog}", "--enable-logging=stderr", "--v=0",
         "--virtual-time-budget=8000", "--dump-dom", url],
        capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, r.stderr[-3000:]
    return Dom(r.stdout), page_requests(netlog), r.stderr


def page_requests(netlog: Path) -> list[str]:
    """Every URL requested on behalf of a page of 127.0.0.1, whatever its host: the network isolation key
    names the site of the frame that asked, which sets the page's requests apart from Chromium's own."""
    d = json.loads(netlog.read_text())
    start = d["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return [e["params"]["url"] for e in d["events"]
            if e["type"] == start and "url" in e.get("params", {})
            and "http://127.0.0.1" in e["params"].get("network_isolation_key", "")]


class Load:
    """clients closed-loop clients posting the test photos until stopped or `limit` requests are sent."""

    def __init__(self, url: str, photos: dict, clients: int = 4, limit: int = 2000):
        self.url, self.paths, self.limit = url, [p for p, _ in photos.values()], limit
        self.stop, self.lock, self.sent, self.statuses = threading.Event(), threading.Lock(), 0, []
        self.pool = concurrent.futures.ThreadPoolExecutor(clients)
        self.futures = [self.pool.submit(self._client) for _ in range(clients)]

    def _client(self):
        while not self.stop.is_set():
            with self.lock:
                if self.sent >= self.limit:
                    return
                path = self.paths[self.sent % len(self.paths)]
                self.sent += 1
            with open(path, "rb") as f:
                status = requests.post(self.url, files={"myfile": f}, timeout=120).status_code
            with self.lock:
                self.statuses.append(status)

    def done(self) -> int:
        with self.lock:
            return len(self.statuses)

    def finish(self) -> list[int]:
        self.stop.set()
        for f in self.futures:
            f.result()
        self.pool.shutdown()
        return self.statuses


def numbers(dom: Dom) -> dict[str, str]:
    return {i: dom.text[i].strip() for i in NUMBER_IDS}


def check_render(dom: Dom, urls: list[str], log: str, origin: str):
    assert dom.attrs["status"].get("class") == "ok", dom.text["status"]
    for i, v in numbers(dom).items():
        assert NUMBER.match(v), f"#{i} is {v!r}, not a number"
    assert int(dom.text["workers-running"]) >= 1
    # The page polled: each chart has a point per sample (steps: two) since the first.
    for i in ("line-queue-visible", "line-workers-running", "line-throughput"):
        assert len(dom.attrs[i]["points"].split()) >= 4, (i, dom.attrs[i]["points"])
    # It fetched nothing but its own origin, and only the page and /metrics (and the favicon).
    hosts = {urlsplit(u).netloc for u in urls}
    assert hosts == {origin}, urls
    paths = [urlsplit(u).path for u in urls]
    assert paths.count("/dashboard") == 1 and paths.count("/metrics") >= 5, paths
    assert set(paths) <= {"/dashboard", "/metrics", "/favicon.ico"}, paths
    # No Content-Security-Policy violation, nor any script error, on the console.
    console = [line for line in log.splitlines() if ":CONSOLE" in line]
    assert not [line for line in console if "violates" in line or "Uncaught" in line], console


def test_dashboard_in_chromium_under_load(imgcls, tmp_path, photos):
    browser = chromium()
    u = Up(imgcls, tmp_path, workers=(1, 2))
    load = None
    try:
        u.wait_ready()
        page, origin = u.url + "dashboard", urlsplit(u.url).netloc
        load = Load(u.url, photos)
        wait_for(lambda: load.done() >= 5, 120, "the first answers under load")
        t0 = time.monotonic()
        dom1, urls1, log1 = render(browser, page, tmp_path / "render1")
        check_render(dom1, urls1, log1, origin)
        # The second render a few seconds (and some answers) later.
        mark = load.done()
        wait_for(lambda: load.done() >= mark + 10 and time.monotonic() - t0 >= 4, 120, "10 more answers")
        dom2, urls2, log2 = render(browser, page, tmp_path / "render2")
        check_render(dom2, urls2, log2, origin)
        # Under load the page measures uploads going through: a throughput and a median latency.
        assert float(dom2.text["throughput"]) > 0 and float(dom2.text["latency"]) > 0, numbers(dom2)
        # What it shows moves with the system: the numbers and the plotted points differ between renders.
        assert numbers(dom1) != numbers(dom2), numbers(dom1)
        assert any(dom1.attrs[i]["points"] != dom2.attrs[i]["points"] for i in LINE_IDS)
        assert dom1.attrs["line-throughput"]["points"] != dom2.attrs["line-throughput"]["points"]
        statuses = load.finish()
        load = None
        assert statuses and set(statuses) == {200}, sorted(set(statuses))
        assert u.stop() == 0
    finally:
        if load:
            load.finish()
        u.kill_everything()

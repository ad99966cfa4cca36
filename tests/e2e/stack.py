"""A web tier and workers started directly (not through `imgcls up`), so that a test chooses each
process's flags, wraps any of their backends in a fault: URL, and signals them itself."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import requests

from test_system import free_port, wait_healthy


class Stack:
    """One web tier and any number of workers on one SQLite file and two bucket directories."""

    def __init__(self, imgcls: Path, tmp: Path, web_args=(), web_queue=None, web_in=None, timeout=300):
        self.imgcls, self.tmp = imgcls, tmp
        self.data = (tmp / "data").resolve()
        (self.data / "in").mkdir(parents=True, exist_ok=True)
        (self.data / "out").mkdir(exist_ok=True)
        self.db = self.data / "imgcls.db"
        self.queue = f"sqlite://{self.db}?queue=requests&sync=normal"
        self.replies = f"sqlite://{self.db}?queue=responses&sync=normal"
        self.in_url, self.out_url = f"file://{self.data}/in", f"file://{self.data}/out"
        self.procs: list[subprocess.Popen] = []
        self.logs: list[Path] = []
        port = free_port()
        self.url = f"http://127.0.0.1:{port}/"
        self.web = self._start("web", "--port", str(port), "--queue", web_queue or self.queue, "--reply-queue",
                               self.replies, "--in-bucket", web_in or self.in_url, "--out-bucket", self.out_url,
                               "--timeout", str(timeout), *web_args)
        wait_healthy(self.url, "the web tier")

    def _start(self, role: str, *args: str) -> subprocess.Popen:
        log = self.tmp / f"{role}-{len(self.procs)}.log"
        self.logs.append(log)
        p = subprocess.Popen([self.imgcls, role, *args], stdout=open(log, "w"), stderr=subprocess.STDOUT)
        self.procs.append(p)
        return p

    def worker(self, *args: str, queue=None, in_url=None, out_url=None) -> subprocess.Popen:
        return self._start("worker", "--queue", queue or self.queue, "--in-bucket", in_url or self.in_url,
                           "--out-bucket", out_url or self.out_url, "--wait-ms", "200", *args)

    def metric(self, name: str) -> float:
        text = requests.get(self.url + "metrics", timeout=5).text
        return float(next(line for line in text.splitlines() if line.startswith(name)).split()[-1])

    def log(self, p: subprocess.Popen) -> str:
        return self.logs[self.procs.index(p)].read_text()

    def depth(self, queue: str) -> tuple[int, int]:
        from conftest import BUILD

        out = subprocess.run([BUILD / "queue_tool", "depth", f"sqlite://{self.db}?queue={queue}&sync=normal"],
                             capture_output=True, check=True, text=True).stdout.split()
        return int(out[0]), int(out[1])

    def send_raw(self, body: bytes):
        from conftest import BUILD

        subprocess.run([BUILD / "queue_tool", "send", self.queue], input=body, check=True)

    def record(self, rid: str) -> dict:
        return json.loads((self.data / "out" / ".imgcls" / "results" / f"{rid}.json").read_text())

    def records(self) -> list[Path]:
        d = self.data / "out" / ".imgcls" / "results"
        return sorted(d.iterdir()) if d.exists() else []

    def claims(self) -> list[Path]:
        d = self.data / "in" / ".imgcls" / "claims"
        return sorted(d.iterdir()) if d.exists() else []

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            p.wait(timeout=60)

"""Running `imgcls up` from a test: start it, read its log, find its children, stop it.

Shared by test_up.py (the supervisor), test_chaos.py and test_soak.py, with the photos they send. Everything that waits polls a
condition with a timeout; nothing sleeps to wait.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path


INLINE_MAX = 32 * 1024  # the web tier's default --inline-max: larger images go by claim check


def mixed_photos(d: Path, photos: dict) -> list[Path]:
    """Small copies of every photo (they go inline in the message) and three originals over 32 KiB
    (they go by claim check through the input bucket)."""
    from PIL import Image

    out = []
    for name, (path, _) in photos.items():
        img = Image.open(path).convert("RGB")
        img.thumbnail((224, 224))
        small = d / f"small_{name}.jpg"
        img.save(small, "JPEG", quality=85)
        assert small.stat().st_size <= INLINE_MAX
        out.append(small)
    for name in ("dog", "eagle", "grace_hopper"):
        big = d / f"big_{name}{photos[name][0].suffix}"
        big.write_bytes(photos[name][0].read_bytes())
        assert big.stat().st_size > INLINE_MAX
        out.append(big)
    return out


def classify(imgcls: Path, paths: list[Path]) -> dict[str, str]:
    """stem -> the label `imgcls classify` gives."""
    r = subprocess.run([str(imgcls), "classify", *map(str, paths)], capture_output=True, text=True, check=True)
    return dict(line.split(":", 1) for line in r.stdout.splitlines())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond, timeout=60.0, what="condition", every=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def alive(pid: int) -> bool:
    """True while pid is a process that has not ended (a zombie has ended: it holds no port)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def port_free(port: int) -> bool:
    """Nothing listens on 127.0.0.1:port (SO_REUSEADDR, as the web tier binds: TIME_WAIT is no owner)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen(1)
        except OSError:
            return False
    return True


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


STARTED = re.compile(r"comp=up event=started role=(\w+) slot=(\d+) pid=(\d+)")


class Up:
    """One `imgcls up` with its stdout and stderr (its children's too) in tmp/up.log."""

    def __init__(self, imgcls: Path, tmp: Path, *args: str, workers: int | tuple[int, int] = 2,
                 data: Path | None = None,
                 env: dict | None = None, **popen):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.data = data or tmp / "data"
        self.log_path = tmp / "up.log"
        self._log = open(self.log_path, "wb")
        lo, hi = workers if isinstance(workers, tuple) else (workers, workers)  # a fixed fleet: min = max
        self.proc = subprocess.Popen([str(imgcls), "up", "--port", str(self.port), "--data-dir", str(self.data),
                                      "--min-workers", str(lo), "--max-workers", str(hi), *args], stdout=self._log,
                                     stderr=subprocess.STDOUT, env=env, **popen)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, pattern: str, timeout=60.0, count=1) -> list[re.Match]:
        """Waits until pattern matches count times in the log; fails early if `up` exited first."""
        rx = re.compile(pattern)

        def found():
            hits = list(rx.finditer(self.log()))
            if len(hits) >= count:
                return hits
            assert self.proc.poll() is None or len(list(rx.finditer(self.log()))) >= count, \
                f"imgcls up exited ({self.proc.returncode}) before {pattern!r}:\n{self.log()[-3000:]}"
            return None

        return wait_for(found, timeout, f"{pattern!r} x{count} in the up log")

    def wait_ready(self, timeout=120.0):
        self.wait_log(r"comp=up event=ready ", timeout)

    def started(self) -> list[tuple[str, int, int]]:
        """(role, slot, pid) of every child `up` has started, in order."""
        return [(m[1], int(m[2]), int(m[3])) for m in STARTED.finditer(self.log())]

    def running(self, role: str | None = None) -> dict:
        """slot -> pid (or, without a role, (role, slot) -> pid) of the children started last for each slot
        that are still alive."""
        last = {}
        for r, slot, pid in self.started():
            if role is None or r == role:
                last[slot if role else (r, slot)] = pid
        return {slot: pid for slot, pid in last.items() if alive(pid)}

    def stop(self, sig=signal.SIGINT, timeout=60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._log.close()

    def kill_everything(self):
        """Last-resort cleanup after a failed test: SIGKILL up and every child it started."""
        for _, _, pid in self.started():
            try:
                if alive(pid) and b"imgcls" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)
            except (FileNotFoundError, ProcessLookupError):
                pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()

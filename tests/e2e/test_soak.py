"""Soak: IMGCLS_SOAK_REQUESTS (default 10,000) requests through the ASan+LSan build of `imgcls up`.

What must hold:
- every request is answered 200 with the label `imgcls classify` gives (`imgcls loadgen --expect`);
- no child dies or is restarted during the run;
- no leak: on Ctrl-C every child stops cleanly (exit 0), so LeakSanitizer runs at its exit and would
  have made the exit status non-zero; and no AddressSanitizer, LeakSanitizer or UBSan report appears in
  the log (which holds every child's stderr);
- memory stays flat: the RSS of the web tier and of each worker after the last request is within a
  bound of what it was after the first 1,000.

RSS (VmRSS) at 1k and at the end, and the duration, are printed (`pytest -s`) and written to soak.txt
beside the log. `make soak` runs it with 10,000 requests (about 15 minutes); `make test` runs a short one
of 1,500 (`make test-soak`, about 2 minutes). On any build other than a sanitizer build it is skipped, and
it is marked slow so the ASan pass of `make test` leaves it out.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BUILD
from up_harness import Up, alive, classify, mixed_photos, rss_kib

pytestmark = pytest.mark.slow

REQUESTS = int(os.environ.get("IMGCLS_SOAK_REQUESTS", "10000"))
FIRST = min(1000, REQUESTS // 3)  # the RSS baseline: after 1k of the full 10k, after a third of a shorter run
CONCURRENCY = 8
SANITIZER_REPORT = re.compile(r"ERROR: (AddressSanitizer|LeakSanitizer)|SUMMARY: \w+Sanitizer|runtime error:")
# Allowed growth from 1k to the end: ASan's quarantine (freed memory held back to catch use after free,
# 256 MiB by default) and the allocator's caches still fill after the first 1k; a leak of even 1 KiB a
# request would pass 9 MiB over 9k requests on top of that, and LSan catches what this misses.
SLACK_KIB = 64 * 1024


def sanitized() -> bool:
    cache = BUILD / "CMakeCache.txt"
    return cache.exists() and "IMGCLS_SANITIZE:BOOL=ON" in cache.read_text()


def loadgen(imgcls: Path, url: str, n: int, folder: Path, expect: Path, env: dict) -> dict:
    r = subprocess.run([str(imgcls), "loadgen", "--num_request", str(n), "--url", url, "--image_folder",
                        str(folder), "--concurrency", str(CONCURRENCY), "--expect", str(expect), "--json"],
                       capture_output=True, text=True, env=env, timeout=6 * 3600)
    assert not SANITIZER_REPORT.search(r.stderr), r.stderr[-5000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert r.returncode == 0, (r.returncode, summary, r.stderr[-3000:])
    return summary


def rss(u: Up, pids: dict[str, int]) -> dict[str, int]:
    return {name: rss_kib(pid) for name, pid in pids.items()}


def test_soak_no_leak_no_error_flat_memory(imgcls, tmp_path, photos):
    if not sanitized():
        pytest.skip("the soak runs on the ASan+LSan build: make soak (IMGCLS_BUILD_DIR=build-asan)")
    folder = tmp_path / "images"
    folder.mkdir()
    expected = classify(imgcls, mixed_photos(folder, photos))
    expect = tmp_path / "expect.csv"
    with open(expect, "w", newline="") as f:
        csv.writer(f, quoting=csv.QUOTE_ALL).writerows(sorted(expected.items()))
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = ":".join(filter(None, [env.get("ASAN_OPTIONS", ""), "detect_leaks=1"]))
    u = Up(imgcls, tmp_path, "--visibility", "30", workers=2, env=env)
    try:
        u.wait_ready(timeout=300)
        pids = {"web": u.running("web")[0]}
        pids.update({f"worker{slot}": pid for slot, pid in sorted(u.running("worker").items())})
        assert len(pids) == 3, u.log()[-3000:]

        t0 = time.monotonic()
        first = loadgen(imgcls, u.url, FIRST, folder, expect, env)
        rss_first = rss(u, pids)
        rest = loadgen(imgcls, u.url, REQUESTS - FIRST, folder, expect, env) if REQUESTS > FIRST else None
        rss_last = rss(u, pids)
        elapsed = time.monotonic() - t0

        ok = first["ok"] + (rest["ok"] if rest else 0)
        report = (f"soak: requests={REQUESTS} ok={ok} seconds={elapsed:.0f} "
                  + " ".join(f"{k}_rss_kib_{FIRST}={rss_first[k]} {k}_rss_kib_{REQUESTS}={rss_last[k]}"
                             for k in pids))
        print("\n" + report)
        (tmp_path / "soak.txt").write_text(report + "\n")

        assert ok == REQUESTS, report
        for s in (first, rest):
            assert s is None or (s["errors"] == 0 and s["accuracy"] == 1.0), s
        assert all(alive(pid) for pid in pids.values()) and "comp=up event=restart" not in u.log(), \
            u.log()[-5000:]
        assert u.stop(timeout=120) == 0, u.log()[-5000:]
        log = u.log()
        for name, pid in pids.items():
            assert re.search(rf"comp=up event=stopped role=\w+ slot=\d+ pid={pid} exit=0 signal=0", log), \
                f"{name} did not stop cleanly (a leak makes the exit status non-zero):\n{log[-5000:]}"
        m = SANITIZER_REPORT.search(log)
        assert not m, log[max(0, m.start() - 200):m.start() + 5000]
        for name in pids:
            assert rss_last[name] <= rss_first[name] * 1.25 + SLACK_KIB, report
    finally:
        u.kill_everything()

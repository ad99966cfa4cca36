"""`imgcls worker` on its own: it drains its batch on SIGTERM, and it keeps a long batch invisible.

The web tier and the workers are started directly (not through `imgcls up`) so that each test
chooses the workers' flags and signals them itself.
"""

from __future__ import annotations

import concurrent.futures
import signal

import pytest
from PIL import Image

from stack import Stack
from test_system import post, wait_for


@pytest.fixture
def stack(imgcls, tmp_path):
    s = Stack(imgcls, tmp_path)
    yield s
    s.stop()


def test_sigterm_finishes_the_batch_in_hand(stack, photos):
    # A visibility far beyond the test's patience: only the signalled worker finishing its batch can
    # answer the requests it holds.
    first = stack.worker("--visibility", "600")
    paths = [photos[name][0] for name in ("dog", "eagle", "chelsea", "coffee", "grace_hopper")] * 2
    with concurrent.futures.ThreadPoolExecutor(len(paths)) as pool:
        futures = [pool.submit(post, stack.url, p) for p in paths]
        wait_for(lambda: stack.metric('imgcls_queue_depth{state="in_flight"}') > 0, what="a batch in hand")
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=60) == 0
        # What it had not received yet is still queued; a second worker answers that.
        stack.worker("--visibility", "600")
        answers = [f.result() for f in futures]
    assert all(r.status_code == 200 for r in answers), [r.text for r in answers]


@pytest.mark.slow
def test_a_long_batch_stays_invisible(stack, tmp_path):
    # Reference mode runs the network at the image's own size: ten 2 MP images take several times
    # the 3 s visibility timeout. Without the heartbeat they would become visible mid-batch and the
    # second worker would answer them again; the web tier counts such duplicate answers.
    folder = tmp_path / "big"
    folder.mkdir()
    for i in range(10):
        Image.new("RGB", (1600, 1200), (20 * i, 100, 200 - 10 * i)).save(folder / f"big_{i}.jpg", "JPEG")
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        futures = [pool.submit(post, stack.url, p) for p in sorted(folder.iterdir())]
        # All ten queued before the first worker starts, so that it takes them as one batch; the
        # second worker then waits for anything that slips out of it.
        wait_for(lambda: stack.metric('imgcls_queue_depth{state="visible"}') == 10, what="ten queued requests")
        stack.worker("--visibility", "3", "--preprocess", "reference")
        wait_for(lambda: stack.metric('imgcls_queue_depth{state="in_flight"}') == 10, what="one batch of ten")
        stack.worker("--visibility", "3", "--preprocess", "reference")
        answers = [f.result() for f in futures]
    assert all(r.status_code == 200 for r in answers), [r.text for r in answers]
    assert stack.metric("imgcls_http_responses_unmatched_total") == 0


def test_start_up_line_says_what_the_engine_runs_on(stack):
    # One network thread, the fleet's default: this file also runs under TSan (tests/tsan/run.sh), where
    # an OpenMP team of libgomp's (not instrumented) could not be checked.
    w = stack.worker("--threads", "1")
    wait_for(lambda: "event=started" in stack.log(w), what="the worker's start-up line")
    line = next(ln for ln in stack.log(w).splitlines() if "event=started" in ln)
    assert "runtime=onednn" in line and "threads=1" in line and "precision=fp32" in line and "isa=avx" in line


def test_start_up_line_says_int8_when_asked(stack):
    w = stack.worker("--precision", "int8", "--threads", "1")
    wait_for(lambda: "event=started" in stack.log(w), what="the worker's start-up line")
    line = next(ln for ln in stack.log(w).splitlines() if "event=started" in ln)
    assert "runtime=onednn" in line and "precision=int8" in line


def test_bad_precision_stops_the_worker_with_a_reason(stack):
    w = stack.worker("--precision", "fp8")
    assert w.wait(timeout=30) != 0
    assert "--precision must be fp32, bf16 or int8, not 'fp8'" in stack.log(w)

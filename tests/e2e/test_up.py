"""`imgcls up` as a supervisor: children die with it, no signal is lost, a child that keeps dying is
restarted with growing delays, "ready" means /healthz answers, and --data-dir is created or refused.

Each test starts its own `imgcls up`. The tests assert what happens, never how fast: every wait polls
a condition with a generous timeout.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
import requests

from conftest import MODEL
from up_harness import Up, alive, free_port, port_free, wait_for


@pytest.fixture
def up_factory(imgcls, tmp_path):
    started = []

    def start(*args, **kw) -> Up:
        u = Up(imgcls, tmp_path, *args, **kw)
        started.append(u)
        return u

    yield start
    for u in started:
        u.kill_everything()


def test_sigkill_of_up_takes_every_child_with_it(up_factory):
    u = up_factory(workers=2)
    u.wait_ready()
    kids = wait_for(lambda: len(u.running()) == 4 and u.running(), what="web, scaler and 2 workers running")
    u.proc.kill()
    u.proc.wait(timeout=30)
    wait_for(lambda: not any(alive(pid) for pid in kids.values()), what="every child gone after SIGKILL of up")
    wait_for(lambda: port_free(u.port), what="the web tier's port free")


@pytest.mark.parametrize("moment", ["at_once", "web_started", "worker_started", "ready"])
def test_ctrl_c_at_any_moment_stops_everything(up_factory, moment):
    u = up_factory(workers=2)
    if moment == "web_started":
        u.wait_log(r"event=started role=web ")
    elif moment == "worker_started":
        u.wait_log(r"event=started role=worker ")
    elif moment == "ready":
        u.wait_ready()
    u.proc.send_signal(signal.SIGINT)
    # Timeout, not a timing: a lost signal shows as `up` never exiting.
    rc = u.proc.wait(timeout=60)
    # At once, SIGINT may land before `up` has blocked it; it then dies of it, before any child exists.
    assert rc == 0 or (moment == "at_once" and rc == -signal.SIGINT), u.log()[-3000:]
    for role, _, pid in u.started():
        assert not alive(pid), f"{role} {pid} outlived `up` ({moment})"
    wait_for(lambda: port_free(u.port), what="the web tier's port free")
    if rc == 0:
        assert "comp=up event=exit status=0" in u.log()


def test_second_ctrl_c_kills_at_once(up_factory):
    u = up_factory(workers=1)
    u.wait_ready()
    kids = u.running()
    u.proc.send_signal(signal.SIGINT)
    u.wait_log(r"comp=up event=stopping")
    u.proc.send_signal(signal.SIGINT)
    rc = u.proc.wait(timeout=60)
    assert rc in (0, 1), u.log()[-3000:]  # 1 if a child was still stopping and took the SIGKILL
    assert not any(alive(pid) for pid in kids.values())


def test_ready_is_logged_only_once_healthz_answers(up_factory):
    u = up_factory(workers=1)
    u.wait_ready()
    # No retry: the moment "ready" is in the log, the web tier answers.
    r = requests.get(u.url + "healthz", timeout=10)
    assert r.status_code == 200
    started_web = u.log().index("event=started role=web ")
    assert started_web < u.log().index("comp=up event=ready ")


def test_precision_reaches_the_workers(up_factory):
    u = up_factory("--precision", "int8", workers=1)
    u.wait_ready()
    u.wait_log(r"comp=worker event=started name=[^ ]* batch=\d+ threads=1 runtime=onednn isa=\S+ precision=int8",
               timeout=120)


def test_bad_precision_is_refused_before_anything_starts(imgcls, tmp_path):
    r = subprocess.run([str(imgcls), "up", "--precision", "fp64", "--data-dir", str(tmp_path / "d")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--precision must be fp32, bf16 or int8, not 'fp64'" in r.stderr
    assert "event=started" not in r.stderr


RESTART = re.compile(r"comp=up event=restart role=worker slot=1 pid=(\d+) exit=(-?\d+) signal=(\d+) in_s=(\d+)")


def test_a_worker_that_keeps_dying_is_restarted_with_growing_delays(up_factory, tmp_path):
    model = tmp_path / "model" / "mobilenet_v2.imgw"  # missing for now: every worker start fails
    u = up_factory("--model", str(model), "--backoff-max", "4", workers=1)
    u.wait_ready()  # the web tier does not need the model
    u.wait_log(RESTART.pattern, timeout=120, count=4)
    delays = [int(m[4]) for m in RESTART.finditer(u.log())]
    assert delays[:4] == sorted(delays[:4]), delays  # never shorter
    assert delays[0] < delays[1] < delays[2], delays  # doubling ...
    assert max(delays) == 4 and delays[3] == 4, delays  # ... up to --backoff-max
    assert all(m[2] == "1" for m in RESTART.finditer(u.log()))  # the worker's own exit status

    # Give it its model: the next start stays up. Once it has been up longer than --backoff-max, it
    # is not in a crash loop any more, and its next death is restarted after 1 s again.
    model.parent.mkdir()
    model.symlink_to(MODEL)
    pid = wait_for(lambda: u.running("worker").get(1), timeout=120, what="a worker that stays up")
    u.wait_log(rf"comp=worker event=started name=[^ ]*:{pid} ", timeout=120)
    wait_for(lambda: uptime_s(pid) > 5, timeout=60, what="the worker up for longer than --backoff-max")
    before = len(RESTART.findall(u.log()))
    os.kill(pid, signal.SIGKILL)
    u.wait_log(RESTART.pattern, count=before + 1)
    last = list(RESTART.finditer(u.log()))[-1]
    assert int(last[1]) == pid and last[3] == str(signal.SIGKILL) and last[4] == "1", last[0]
    assert u.stop() == 0


def uptime_s(pid: int) -> float:
    out = subprocess.run(["ps", "-o", "etimes=", "-p", str(pid)], capture_output=True, text=True).stdout
    return float(out.strip() or 0)


def test_data_dir_parents_are_created(up_factory, tmp_path):
    data = tmp_path / "a" / "b" / "c"
    u = up_factory(workers=1, data=data)
    u.wait_ready()
    assert (data / "in").is_dir() and (data / "out").is_dir() and (data / "imgcls.db").exists()
    assert u.stop() == 0


def run_up(imgcls, data: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(imgcls), "up", "--port", str(free_port()), "--data-dir", str(data)],
                          capture_output=True, text=True, timeout=60, **kw)


@pytest.mark.parametrize("where", ["is_a_file", "under_a_file"])
def test_data_dir_with_a_file_in_the_way_is_a_clear_error(imgcls, tmp_path, where):
    f = tmp_path / "plain-file"
    f.write_text("not a directory")
    r = run_up(imgcls, f if where == "is_a_file" else f / "sub" / "data")
    assert r.returncode == 1, r.stderr
    assert "--data-dir" in r.stderr and "Not a directory" in r.stderr, r.stderr
    assert "event=started" not in r.stderr  # nothing was started


def test_data_dir_without_permission_is_a_clear_error(imgcls):
    top = Path(tempfile.mkdtemp(prefix="imgcls-up-perm-"))
    try:
        top.chmod(0o755)
        locked = top / "locked"
        locked.mkdir(mode=0o555)
        locked.chmod(0o555)
        # root ignores permission bits: run as nobody then, from a copy of the binary in this world-
        # readable directory (the checkout's own path may not be traversable by nobody: mktemp -d is 0700).
        as_user = {"user": 65534, "group": 65534} if os.geteuid() == 0 else {}
        binary = top / "imgcls"
        shutil.copy(imgcls, binary)
        binary.chmod(0o755)
        for data in (locked / "data", locked):  # cannot create; exists but cannot write in it
            r = run_up(binary, data, **as_user)
            assert r.returncode == 1, r.stderr
            assert "--data-dir" in r.stderr and "Permission denied" in r.stderr, r.stderr
            assert "event=started" not in r.stderr
    finally:
        (top / "locked").chmod(stat.S_IRWXU)
        subprocess.run(["rm", "-rf", str(top)], check=True)


def test_a_port_in_use_is_a_clear_error(imgcls, tmp_path):
    # Something else listens there: `up` says so and exits, rather than restarting a web tier that can
    # never bind.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        r = subprocess.run([str(imgcls), "up", "--port", str(port), "--data-dir", str(tmp_path / "data")],
                           capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stderr
    assert f"--port {port} is already in use" in r.stderr, r.stderr
    assert "event=started" not in r.stderr

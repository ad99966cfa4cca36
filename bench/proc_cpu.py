"""CPU time of a process tree, per role, from /proc: what `make bench` charges each request outside
decoding and inference (the [speed] target: at most 1.5 ms, all tiers together).

CPU time, not wall time: on a shared 2-vCPU machine the wall clock of one process includes the others'
work, while the kernel's per-process utime + stime does not."""

from __future__ import annotations

import os

_TCK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()  # the command name may hold spaces and parentheses


def tree(pid: int) -> list[int]:
    """pid and all its descendants alive now."""
    children: dict[int, list[int]] = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                children.setdefault(int(_stat(int(p))[1]), []).append(int(p))
            except OSError:
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def role(pid: int) -> str:
    """`imgcls web` -> "web"; anything else by its program name."""
    try:
        with open(f"/proc/{pid}/cmdline") as f:
            argv = f.read().split("\0")
    except OSError:
        return "?"
    return argv[1] if len(argv) > 1 and argv[0].endswith("imgcls") else os.path.basename(argv[0])


def cpu_s(pids: list[int]) -> dict[int, float]:
    out = {}
    for p in pids:
        try:
            st = _stat(p)
            out[p] = (int(st[11]) + int(st[12])) / _TCK
        except OSError:
            pass
    return out


def per_role_ms(before: dict[int, float], after: dict[int, float], roles: dict[int, str], n: int) -> dict[str, float]:
    """CPU ms per request of each role between two cpu_s() readings of the same processes."""
    out: dict[str, float] = {}
    for p, t in after.items():
        if p in before:
            out[roles[p]] = out.get(roles[p], 0.0) + (t - before[p]) * 1000.0 / n
    return out

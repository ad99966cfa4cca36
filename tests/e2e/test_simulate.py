"""`imgcls simulate` as a user runs it: the summary, --json, the --csv timeline, the --svg chart, and
refusals of bad flags and bad workload files (exit 2, with a message naming the problem).

Behaviour only: the simulator's numbers are checked for consistency, never against wall-clock time."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import xml.etree.ElementTree as ET

import pytest

SVG_NS = "{http://www.w3.org/2000/svg}"
FIELDS = ["policy", "drain_s", "p50_s", "p95_s", "p99_s", "worker_s", "peak_workers", "actions"]
CSV_COLUMNS = ["t", "policy", "visible", "in_flight", "running", "starting", "busy", "draining", "desired",
               "completed", "mean_latency_s"]


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMGCLS_")}
    env.update(extra)
    return env


def run(imgcls, *args, env=None):
    return subprocess.run([imgcls, "simulate", *map(str, args)], capture_output=True, text=True, timeout=60,
                          env=env or clean_env())


def test_help(imgcls):
    r = run(imgcls, "--help")
    assert r.returncode == 0
    assert "usage: imgcls simulate" in r.stdout
    for flag in ["--workload", "--boot", "--service", "--policy", "--csv", "--svg", "--json", "IMGCLS_BOOT"]:
        assert flag in r.stdout


def test_json_has_exactly_the_fields(imgcls):
    r = run(imgcls, "--workload", "burst", "--boot", "30", "--service", "2", "--policy", "backlog,threshold,alarm",
            "--json")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["policy"] for row in rows] == ["backlog", "threshold", "alarm"]
    for row in rows:
        assert list(row) == FIELDS
        assert all(isinstance(row[k], (int, float)) for k in FIELDS[1:])
        assert 0 < row["p50_s"] <= row["p95_s"] <= row["p99_s"] <= row["drain_s"]
        assert 1 <= row["peak_workers"] <= 19
    backlog, _, alarm = rows
    assert backlog["drain_s"] < alarm["drain_s"] and backlog["worker_s"] < alarm["worker_s"]


def test_summary_table_side_by_side(imgcls):
    r = run(imgcls, "--workload", "spikes", "--boot", "0.05", "--policy", "alarm,backlog")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    header = next(line for line in lines if "backlog" in line and "alarm" in line)
    assert header.index("alarm") < header.index("backlog")  # in the order asked for
    for label in ["time to drain", "p50 latency", "p95 latency", "p99 latency", "worker-seconds", "peak workers",
                  "scaling actions"]:
        assert any(line.startswith(label) for line in lines), label


def test_csv_and_svg_are_written_and_well_formed(imgcls, tmp_path):
    out_csv, out_svg = tmp_path / "timeline.csv", tmp_path / "chart.svg"
    r = run(imgcls, "--workload", "burst", "--service", "2", "--csv", out_csv, "--svg", out_svg, "--json")
    assert r.returncode == 0, r.stderr
    summary = {row["policy"]: row for row in map(json.loads, r.stdout.splitlines())}

    with out_csv.open(newline="") as f:
        rows = list(csv.DictReader(f))
    with out_csv.open(newline="") as f:
        assert next(csv.reader(f)) == CSV_COLUMNS
    by_policy = {}
    for row in rows:
        by_policy.setdefault(row["policy"], []).append(row)
    assert set(by_policy) == {"backlog", "threshold", "alarm"}
    for name, ticks in by_policy.items():
        times = [float(t["t"]) for t in ticks]
        assert times == sorted(times) and times[0] == 0
        assert len({len(v) for v in by_policy.values()}) == 1  # the same window for every policy
        assert sum(int(t["completed"]) for t in ticks) == 100
        assert max(int(t["running"]) + int(t["starting"]) for t in ticks) <= 19
        latencies = [float(t["mean_latency_s"]) for t in ticks if t["mean_latency_s"]]
        assert latencies and max(latencies) <= summary[name]["drain_s"] + 1e-6
        for t in ticks:
            assert (t["mean_latency_s"] == "") == (t["completed"] == "0")

    root = ET.parse(out_svg).getroot()
    assert root.tag == SVG_NS + "svg"
    texts = ["".join(t.itertext()) for t in root.iter(SVG_NS + "text")]
    for name in ["backlog", "threshold", "alarm"]:  # one captioned panel per policy
        assert any(t.startswith(name + ": drained in") for t in texts), name
    assert sum(t == "time (s)" for t in texts) == 3
    assert any("queue depth" in t for t in texts) and any("running" in t and "starting" in t for t in texts)
    assert len(list(root.iter(SVG_NS + "path"))) >= 3 * 4
    assert not list(root.iter(SVG_NS + "script")) and not list(root.iter(SVG_NS + "image"))  # self-contained


def test_csv_workload_unsorted_is_sorted_and_named_safely_in_the_svg(imgcls, tmp_path):
    work = tmp_path / "a&b<c>.csv"
    work.write_text("arrival_s\n0.3\n0.1\n\n0.2\n")
    out_svg = tmp_path / "chart.svg"
    r = run(imgcls, "--workload", work, "--boot", "0.05", "--policy", "backlog", "--svg", out_svg, "--json")
    assert r.returncode == 0, r.stderr
    assert "event=workload_sorted" in r.stderr
    row = json.loads(r.stdout)
    assert row["policy"] == "backlog" and row["drain_s"] > 0
    title = "".join(next(ET.parse(out_svg).getroot().iter(SVG_NS + "text")).itertext())
    assert "a&b<c>.csv" in title


def test_flags_come_from_the_environment_too(imgcls):
    flag = run(imgcls, "--boot", "0.05", "--service", "2", "--json", "--policy", "backlog")
    env = run(imgcls, "--json", env=clean_env(IMGCLS_BOOT="0.05", IMGCLS_SERVICE="2", IMGCLS_POLICY="backlog"))
    assert flag.returncode == 0 and env.returncode == 0, env.stderr
    assert flag.stdout == env.stdout


@pytest.mark.parametrize("args, message", [
    (["--boot", "abc"], "--boot: expected a number of seconds"),
    (["--boot", "inf"], "--boot: expected a number of seconds"),
    (["--boot", "nan"], "--boot: expected a number of seconds"),
    (["--boot", "30s"], "--boot: expected a number of seconds"),
    (["--boot", "-1"], "--boot: -1 s is outside"),
    (["--service", "0"], "--service: 0 s is outside"),
    (["--tick", "1e9"], "--tick:"),
    (["--until", "10", "--workload", "spikes"], "--until: 10 s is before the last arrival"),
    (["--policy", "backlog,fastest"], "--policy: 'fastest' is not backlog, threshold or alarm"),
    (["--policy", "backlog,backlog"], "--policy: backlog is listed twice"),
    (["--policy", ""], "--policy: '' is not"),
    (["--min", "5", "--max", "3"], "--min 5 is above --max 3"),
    (["--max", "0"], "--max: 0 is outside"),
    (["--workload", "bursts"], "--workload: 'bursts' is not burst, ramp, spikes or diurnal"),
    (["--nope"], "unknown option --nope"),
    (["extra"], "usage: imgcls simulate"),
])
def test_bad_flags_exit_2_with_a_clear_message(imgcls, args, message):
    r = run(imgcls, *args)
    assert r.returncode == 2, (args, r.stdout, r.stderr)
    assert message in r.stderr, r.stderr
    assert r.stdout == ""


def test_bad_environment_value_names_the_variable(imgcls):
    r = run(imgcls, env=clean_env(IMGCLS_MAX="many"))
    assert r.returncode == 2 and "IMGCLS_MAX" in r.stderr


@pytest.mark.parametrize("text, message", [
    ("arrival_s\n0.5\n1.0\nsoon\n", ":4: 'soon' is not an arrival time"),
    ("0.5\n-2\n", ":2: '-2' is not an arrival time"),
    ("0.5\nnan\n", ":2: 'nan' is not an arrival time"),
    ("1e400\n", ":1: '1e400' is not an arrival time"),
    ("1\n" + "9" * 200 + "\n", ":2: line longer than"),
    ("t\n", "no arrival times"),
])
def test_bad_csv_workload_exits_2_with_the_line(imgcls, tmp_path, text, message):
    work = tmp_path / "arrivals.csv"
    work.write_text(text)
    r = run(imgcls, "--workload", work)
    assert r.returncode == 2, r.stderr
    assert str(work) in r.stderr and message in r.stderr, r.stderr


def test_unwritable_output_exits_1(imgcls, tmp_path):
    r = run(imgcls, "--csv", tmp_path / "no" / "such" / "dir.csv")
    assert r.returncode == 1 and "dir.csv" in r.stderr

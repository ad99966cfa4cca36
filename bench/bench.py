#!/usr/bin/env python3
"""`make bench`: imgcls side by side with what a user would otherwise assemble, in the same run.

Every row runs imgcls and its competitor on the same inputs, interleaved, and reports medians and
ratios (> 1 means imgcls is faster or smaller). The machine is shared and noisy, so single absolute
times mean little; the ratios are the numbers to quote.

  network   MobileNetV2 batch 1, the network alone: C engine vs ONNX Runtime on the same folded graph,
            per precision: fp32 and int8 (against ORT fp32, and int8 against ORT's static QDQ int8 with
            per-channel weights, calibrated on the same photos), bf16 where the CPU has AMX
  accuracy  int8 (and bf16) top-1 / top-5 agreement with fp32 on the held-out photos, both preprocessing
            modes (tools/model/accuracy.py)
  pipeline  JPEG bytes to top-5: imgcls (fp32, int8) vs Pillow decode + torchvision-style
            resize/crop/normalise + ORT fp32
  decode    decode + preprocess of a 500x375 and a 12 MP JPEG: imgcls vs Pillow
  cold      process start to first result: `imgcls classify` vs a Python + ONNX Runtime process
  memory    peak RSS of `imgcls classify` on one image
  system    the whole local system (`imgcls up`, 2 workers) under `imgcls loadgen`, against the bare
            engine's images/s on the same photos in the same run, in fp32 and in int8
  scale     autoscaling: `imgcls up --max-workers <CPUs>` under a sustained load (how soon the first extra
            worker starts, how soon after the drain the fleet is back at the minimum), and `imgcls
            simulate` on the AWS shape (30 s boot, 1 to 19 instances) for the 100-image burst, the
            backlog policy against the original design's CloudWatch alarms in the same run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools" / "model"))
sys.path.insert(0, str(REPO / "bench"))
import accuracy  # noqa: E402
import onnx_ref  # noqa: E402
import photos as photo_sets  # noqa: E402
import proc_cpu  # noqa: E402

MODEL = REPO / "models" / "mobilenet_v2.imgw"
PHOTOS = [Path("/usr/share/darknet/data") / n for n in ("dog.jpg", "eagle.jpg", "giraffe.jpg", "horses.jpg",
                                                       "kite.jpg", "person.jpg")]


def median(xs):
    return statistics.median(xs)


def c_bench(build: Path, mode: str, *args, env: dict | None = None) -> list[float]:
    return c_bench_info(build, mode, *args, env=env)["ms"]


def c_bench_info(build: Path, mode: str, *args, env: dict | None = None) -> dict:
    """`imgcls bench` output: ms per iteration, and the runtime and ISA it ran on."""
    out = subprocess.run([build / "imgcls", "bench", mode, "--model", MODEL, *map(str, args)],
                         check=True, capture_output=True, text=True, env={**os.environ, **(env or {})}).stdout
    return json.loads(out)


def ort_session(threads: int):
    return onnx_ref.make_session(onnx_ref.build_onnx_from_imgw(MODEL), optimize=True, threads=threads)


def ort_int8_session(threads: int, folder: Path):
    """ONNX Runtime's static int8: QDQ, u8 activations, s8 weights per channel (min/max calibration), on
    the photos the engine's int8 was calibrated on, in imagenet mode."""
    import logging

    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    logging.getLogger().setLevel(logging.ERROR)  # its advice to run its pre-processing script first
    fp32, int8 = folder / "fp32.onnx", folder / "int8.onnx"
    if not int8.exists():
        onnx.save(onnx_ref.build_onnx_from_imgw(MODEL), fp32)
        xs = iter([photo_sets.imagenet_tensor(photo_sets.load_rgb(p)) for p in photo_sets.calibration_photos()])

        class Reader(CalibrationDataReader):
            def get_next(self):
                x = next(xs, None)
                return None if x is None else {"input": x}

        quantize_static(str(fp32), str(int8), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    return ort.InferenceSession(str(int8), so, providers=["CPUExecutionProvider"])


def cpu_has_amx(build: Path) -> bool:
    return c_bench_info(build, "network", "--iters", 1, "--warmup", 0)["isa"] == "avx512_core_amx"


def time_calls(fn, iters: int, warmup: int = 5) -> list[float]:
    for _ in range(warmup):
        fn()
    ms = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        ms.append((time.perf_counter() - t) * 1e3)
    return ms


# The network rows: each precision of the engine against ONNX Runtime, interleaved in the same
# rounds. "ISA capped to AVX2" stands in for an AVX2-only CPU (on one, it is the same as uncapped).
AVX2 = {"ONEDNN_MAX_CPU_ISA": "AVX2"}
NETWORK_SIDES = [("fp32", "oneDNN", [], {}),
                 ("fp32", "oneDNN, ISA capped to AVX2", [], AVX2),
                 ("int8", "oneDNN", ["--precision", "int8"], {}),
                 ("int8", "oneDNN, ISA capped to AVX2", ["--precision", "int8"], AVX2),
                 ("bf16", "oneDNN", ["--precision", "bf16"], {})]


def bench_network(build: Path, iters: int, rounds: int) -> list[dict]:
    rows = []
    amx = cpu_has_amx(build)
    sides = [s for s in NETWORK_SIDES if s[0] != "bf16" or amx]
    x = np.random.default_rng(0).standard_normal((1, 224, 224, 3), dtype=np.float32)
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "in.f32"
        x.tofile(src)
        for threads in (1, 2):
            xin = {"input": np.ascontiguousarray(x.transpose(0, 3, 1, 2))}
            sess, qsess = ort_session(threads), ort_int8_session(threads, Path(d))
            c, isa = {(p, n): [] for p, n, _, _ in sides}, {}
            o, oq = [], []
            for _ in range(rounds):  # interleave, so a noisy moment hurts every side alike
                for prec, name, flags, env in sides:
                    info = c_bench_info(build, "network", "--threads", threads, "--iters", iters, "--input", src,
                                        *flags, env=env)
                    c[prec, name] += info["ms"]
                    isa[prec, name] = info["isa"]
                o += time_calls(lambda: sess.run(None, xin), iters)
                oq += time_calls(lambda: qsess.run(None, xin), iters)
            for prec, name, _, _ in sides:
                rows.append({"row": f"network {prec}, batch 1, {threads} thread(s), {name} ({isa[prec, name]})",
                             "imgcls_ms": median(c[prec, name]), "other": "ONNX Runtime fp32", "other_ms": median(o)})
                if prec == "int8":
                    rows.append({"row": f"network int8, batch 1, {threads} thread(s), {name} ({isa[prec, name]})",
                                 "imgcls_ms": median(c[prec, name]), "other": "ONNX Runtime int8 (QDQ, per channel)",
                                 "other_ms": median(oq)})
            if not amx:
                why = f"bf16 needs AMX; this CPU's oneDNN ISA is {isa['fp32', 'oneDNN']}"
                rows.append({"row": f"network bf16, {threads} thread(s)", "imgcls": "skipped", "other": "",
                             "other_v": "", "ratio": why})
    return rows


def bench_accuracy(build: Path) -> list[dict]:
    """Agreement with fp32 on the held-out photos: int8, and bf16 where it runs."""
    precisions = ["int8", "bf16"] if cpu_has_amx(build) else ["int8"]
    rows = []
    for p in precisions:
        for r in accuracy.measure(build / "imgcls", MODEL, p):
            target = "97% / 95%" if p == "int8" else "99% / -"
            rows.append({"row": f"{p} agreement with fp32, {r['mode']} mode, {r['photos']} held-out photos",
                         "imgcls": f"top-1 {r['top1']:.1%}", "other": "top-5 overlap", "other_v": f"{r['top5']:.1%}",
                         "ratio": f"target {target}"})
    if "bf16" not in precisions:
        rows.append({"row": "bf16 agreement with fp32", "imgcls": "skipped", "other": "", "other_v": "",
                     "ratio": "bf16 needs AMX, which this CPU does not have"})
    return rows


def pillow_preprocess(data: bytes) -> np.ndarray:
    """What a user writes with Pillow, as torchvision.transforms does: Resize(256), CenterCrop(224),
    ToTensor, Normalize."""
    import io

    return photo_sets.imagenet_tensor(Image.open(io.BytesIO(data)).convert("RGB"))


def bench_pipeline(build: Path, iters: int, rounds: int) -> list[dict]:
    sess = ort_session(1)
    blobs = [p.read_bytes() for p in PHOTOS]

    def competitor():
        for b in blobs:
            logits = sess.run(None, {"input": pillow_preprocess(b)})[0][0]
            np.argsort(-logits)[:5]

    c, q, o = [], [], []
    for _ in range(rounds):
        c += c_bench(build, "pipeline", "--iters", iters, *PHOTOS)
        q += c_bench(build, "pipeline", "--iters", iters, "--precision", "int8", *PHOTOS)
        o += [t / len(blobs) for t in time_calls(competitor, iters, warmup=1)]
    return [{"row": "pipeline fp32, JPEG bytes to top-5, 1 thread", "imgcls_ms": median(c),
             "other": "Pillow + ONNX Runtime fp32", "other_ms": median(o)},
            {"row": "pipeline int8, JPEG bytes to top-5, 1 thread", "imgcls_ms": median(q),
             "other": "Pillow + ONNX Runtime fp32", "other_ms": median(o)}]


def make_jpeg(path: Path, size: tuple[int, int]):
    Image.open(PHOTOS[0]).convert("RGB").resize(size, Image.BICUBIC).save(path, "JPEG", quality=90)


def bench_decode(build: Path, iters: int, rounds: int) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for label, size in (("500x375", (500, 375)), ("12 MP (4000x3000)", (4000, 3000))):
            path = Path(d) / "x.jpg"
            make_jpeg(path, size)
            data = path.read_bytes()
            n = iters if size[0] < 1000 else max(5, iters // 5)
            c, o = [], []
            for _ in range(rounds):
                c += c_bench(build, "decode", "--iters", n, path)
                o += time_calls(lambda: pillow_preprocess(data), n, warmup=2)
            rows.append({"row": f"decode + preprocess, {label} JPEG", "imgcls_ms": median(c),
                         "other": "Pillow", "other_ms": median(o)})
    return rows


def run_measured(cmd: list) -> float:
    """Wall time in ms of one child process."""
    t = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return (time.perf_counter() - t) * 1e3


def peak_rss_kib(cmd: list) -> int:
    """Peak RSS of a command, measured by /usr/bin/time. Not os.wait4: a child forked from this
    Python process starts as a copy of it (ONNX Runtime loaded, ~250 MB), and ru_maxrss keeps that."""
    r = subprocess.run(["/usr/bin/time", "-f", "%M", *map(str, cmd)], stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True, check=True)
    return int(r.stderr.strip().splitlines()[-1])


PY_WORKER = """
import sys, numpy as np
sys.path.insert(0, {tools!r}); sys.path.insert(0, {bench!r})
import onnx_ref, bench
s = onnx_ref.make_session(onnx_ref.build_onnx_from_imgw({model!r}), optimize=True, threads=1)
logits = s.run(None, {{"input": bench.pillow_preprocess(open({photo!r}, "rb").read())}})[0][0]
print(np.argsort(-logits)[:5])
"""


def bench_cold(build: Path, runs: int) -> list[dict]:
    photo = str(PHOTOS[0])
    code = PY_WORKER.format(tools=str(REPO / "tools" / "model"), bench=str(REPO / "bench"), model=str(MODEL),
                            photo=photo)
    c, o, rss = [], [], []
    for _ in range(runs):
        c.append(run_measured([str(build / "imgcls"), "classify", photo]))
        o.append(run_measured([sys.executable, "-c", code]))
        rss.append(peak_rss_kib([build / "imgcls", "classify", photo]))
    return [{"row": "cold start to first result", "imgcls_ms": median(c), "other": "Python + ONNX Runtime",
             "other_ms": median(o)},
            {"row": "peak RSS, classify one image", "imgcls_mib": max(rss) / 1024}]


def loadgen(build: Path, url: str, folder: Path, n: int, concurrency: int) -> dict:
    r = subprocess.run([build / "imgcls", "loadgen", "--num_request", str(n), "--url", url, "--image_folder",
                        folder, "--concurrency", str(concurrency), "--json"], capture_output=True, text=True)
    return json.loads(r.stdout)


def engine_throughput(build: Path, procs: int, iters: int, precision: str) -> tuple[float, float, float]:
    """Images/s of `procs` bare-engine processes side by side (1 thread each), their median ms per image,
    and their CPU ms per image (`imgcls bench`'s cpu_ms: the engine's own CPU, start-up left out).

    Images/s comes from the mean time per image over one pass of the photos (the median of the passes),
    not from the median image: the photos differ in cost (kite.jpg is 1352x900), loadgen sends each
    equally often, and a median image would overstate what the engine does per second."""
    cmd = [build / "imgcls", "bench", "pipeline", "--model", MODEL, "--iters", str(iters), "--precision", precision,
           *PHOTOS]
    ps = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(procs)]
    outs = [json.loads(p.communicate()[0]) for p in ps]
    n = len(PHOTOS)
    per_pass = [median([statistics.mean(o["ms"][i:i + n]) for i in range(0, len(o["ms"]), n)]) for o in outs]
    return (sum(1000.0 / m for m in per_pass), median([median(o["ms"]) for o in outs]),
            median([o["cpu_ms"] for o in outs]))


def start_up(build: Path, data: Path, precision: str = "fp32") -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([build / "imgcls", "up", "--port", str(port), "--data-dir", data, "--min-workers", "2",
                             "--max-workers", "2", "--precision", precision],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    import urllib.request

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "healthz", timeout=1)
            return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("imgcls up did not become healthy")


def bench_system(build: Path, iters: int, precision: str = "fp32") -> list[dict]:
    full = precision == "fp32"  # int8: the throughput and CPU rows only
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d) / "images"
        folder.mkdir()
        for p in PHOTOS:
            shutil.copy(p, folder / p.name)
        proc, url = start_up(build, Path(d) / "data", precision)
        try:
            loadgen(build, url, folder, 20, 4)  # warm up: runtimes built, pages touched
            engine_ips, engine_ms, engine_cpu = engine_throughput(build, 2, iters, precision)
            pids = proc_cpu.tree(proc.pid)
            roles = {p: proc_cpu.role(p) for p in pids}
            before = proc_cpu.cpu_s(pids)
            tput = loadgen(build, url, folder, 300, 32)
            cpu = proc_cpu.per_role_ms(before, proc_cpu.cpu_s(pids), roles, 300)
            # before and after: noise shows
            engine_ips2, engine_ms2, engine_cpu2 = engine_throughput(build, 2, iters, precision)
            if full:
                single = loadgen(build, url, folder, 50, 1)
                burst = loadgen(build, url, folder, 100, 0)
                hold = loadgen(build, url, folder, 2000, 0)
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)
    base = (engine_ips + engine_ips2) / 2
    outside = sum(cpu.values()) - (engine_cpu + engine_cpu2) / 2
    parts = ", ".join(f"{k} {v:.2f}" for k, v in sorted(cpu.items()) if v >= 0.005)
    target = "0.80" if full else "0.60"
    rows = [
        {"row": f"CPU per request outside decode and inference, all tiers, {precision}", "imgcls": f"{outside:.2f} ms",
         "other": "CPU ms per request by process", "other_v": parts,
         "ratio": "target <= 1.5 ms"},
        {"row": f"system throughput {precision}, 2 workers, 32 in flight",
         "imgcls": f"{tput['throughput_rps']:.1f} img/s",
         "other": f"bare engine {precision}, 2 processes", "other_v": f"{base:.1f} img/s",
         "ratio": f"{tput['throughput_rps'] / base:.2f} of the engine (target >= {target})"}]
    if not full:
        return rows
    return rows + [
        {"row": "system latency, one request at a time (p50)", "imgcls": f"{single['latency_ms']['p50']:.1f} ms",
         "other": "bare engine, JPEG to top-5", "other_v": f"{engine_ms:.1f} ms",
         "ratio": f"+{single['latency_ms']['p50'] - engine_ms:.1f} ms (target <= +5 ms)"},
        {"row": "burst of 100 concurrent requests (mean latency)", "imgcls": f"{burst['latency_ms']['mean']:.0f} ms",
         "other": "", "other_v": "", "ratio": f"errors {burst['errors']} (target mean <= 500 ms)"},
        {"row": "2,000 concurrent waiting connections", "imgcls": f"{hold['ok']} ok / {hold['errors']} errors",
         "other": "", "other_v": "", "ratio": f"max latency {hold['latency_ms']['max'] / 1000:.1f} s"},
    ]


def log_times(log: str, pattern: str) -> list[float]:
    """Wall-clock seconds of the log lines that contain pattern (ts=2026-12-02T05:11:24.681Z ...)."""
    import datetime

    out = []
    for line in log.splitlines():
        if pattern in line and line.startswith("ts="):
            ts = datetime.datetime.strptime(line[3:26], "%Y-%m-%dT%H:%M:%S.%f")
            out.append(ts.replace(tzinfo=datetime.timezone.utc).timestamp())
    return out


def bench_scale_local(build: Path) -> list[dict]:
    """A sustained load (32 clients in a closed loop) against `imgcls up` from one worker."""
    cpus = os.cpu_count() or 2
    window = 15  # the scaler's default --scale-in-window-s
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d) / "images"
        folder.mkdir()
        for p in PHOTOS:
            shutil.copy(p, folder / p.name)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        log_path = Path(d) / "up.log"
        with open(log_path, "w") as log:
            proc = subprocess.Popen([build / "imgcls", "up", "--port", str(port), "--data-dir", Path(d) / "data",
                                     "--min-workers", "1", "--max-workers", str(cpus)], stdout=log, stderr=log)
        url = f"http://127.0.0.1:{port}/"
        try:
            deadline = time.monotonic() + 60
            while "event=ready" not in log_path.read_text() and time.monotonic() < deadline:
                time.sleep(0.05)
            t_load = time.time()
            loadgen(build, url, folder, 1500, 32)
            t_drained = time.time()
            deadline = time.monotonic() + window + 30
            while not [t for t in log_times(log_path.read_text(), "event=scaled_in") if t > t_drained] and \
                    time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)
        text = log_path.read_text()
    extra = [t for t in log_times(text, "event=started role=worker slot=2 ") if t >= t_load]
    back = [t for t in log_times(text, "event=scaled_in") if t >= t_drained]
    first = f"{extra[0] - t_load:.2f} s" if extra else "never"
    last = f"{back[-1] - t_drained:.1f} s" if back else "never"
    return [
        {"row": f"local: first extra worker after a sustained load starts (1 to {cpus} workers)", "imgcls": first,
         "other": "", "other_v": "", "ratio": "target <= 1 s"},
        {"row": "local: back at 1 worker after the queue drains", "imgcls": last, "other": "", "other_v": "",
         "ratio": f"target <= {window} + 2 s"},
    ]


def simulate(build: Path, service: float, csv: Path) -> dict[str, dict]:
    out = subprocess.run([build / "imgcls", "simulate", "--workload", "burst", "--min", "1", "--max", "19",
                          "--boot", "30", "--service", str(service), "--policy", "backlog,threshold,alarm",
                          "--json", "--csv", csv], check=True, capture_output=True, text=True).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return {r["policy"]: r for r in rows}


def first_scale_out(csv: Path, policy: str) -> float | None:
    """The first time the policy's desired count rose, from the simulator's timeline."""
    import csv as csvmod

    with open(csv) as f:
        rows = [r for r in csvmod.DictReader(f) if r["policy"] == policy]
    for prev, r in zip(rows, rows[1:]):
        if int(r["desired"]) > int(prev["desired"]):
            return float(r["t"])
    return None


def bench_scale_sim(build: Path) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for service, what in ((2.0, "the original design's 2 s per image"), (0.012, "our engine's 12 ms")):
            csv = Path(d) / f"sim-{service}.csv"
            r = simulate(build, service, csv)
            b, a = r["backlog"], r["alarm"]
            fb, fa = first_scale_out(csv, "backlog"), first_scale_out(csv, "alarm")
            rows.append({"row": f"AWS burst of 100, {what}: first scale-out decided",
                         "imgcls": f"{fb:.0f} s" if fb is not None else "none", "other": "CloudWatch alarm",
                         "other_v": f"{fa:.0f} s" if fa is not None else "none", "ratio": "target <= 2 s"})
            rows.append({"row": f"AWS burst of 100, {what}: time to drain", "imgcls": f"{b['drain_s']:.1f} s",
                         "other": "CloudWatch alarm", "other_v": f"{a['drain_s']:.1f} s",
                         "ratio": f"{a['drain_s'] / b['drain_s']:.2f}x"})
            rows.append({"row": f"AWS burst of 100, {what}: worker-seconds (cost)",
                         "imgcls": f"{b['worker_s']:.0f} s ({b['peak_workers']} peak)", "other": "CloudWatch alarm",
                         "other_v": f"{a['worker_s']:.0f} s ({a['peak_workers']} peak)",
                         "ratio": f"{a['worker_s'] / b['worker_s']:.2f}x"})
    return rows


def print_table(rows: list[dict]):
    print("| measurement | imgcls | competitor | competitor's | imgcls speed-up |")
    print("|---|---:|---|---:|---:|")
    for r in rows:
        if "ratio" in r:
            print(f"| {r['row']} | {r['imgcls']} | {r['other']} | {r['other_v']} | {r['ratio']} |")
            continue
        if "imgcls_mib" in r:
            print(f"| {r['row']} | {r['imgcls_mib']:.1f} MiB | | | |")
            continue
        ratio = r["other_ms"] / r["imgcls_ms"]
        extra = ""
        if r["row"].startswith("network"):
            extra = f" ({1000 / r['imgcls_ms']:.0f} vs {1000 / r['other_ms']:.0f} img/s)"
        print(f"| {r['row']} | {r['imgcls_ms']:.2f} ms | {r['other']} | {r['other_ms']:.2f} ms | "
              f"{ratio:.2f}x{extra} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build", help="build directory holding imgcls")
    ap.add_argument("--iters", type=int, default=30, help="timed iterations per round")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds per side")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON too")
    ap.add_argument("--only", choices=["network", "accuracy", "pipeline", "decode", "cold", "system", "scale"],
                    action="append")
    args = ap.parse_args()
    build = Path(args.build)
    build = build if build.is_absolute() else REPO / build
    parts = args.only or ["network", "accuracy", "pipeline", "decode", "cold", "system", "scale"]
    rows = []
    if "network" in parts:
        rows += bench_network(build, args.iters, args.rounds)
    if "accuracy" in parts:
        rows += bench_accuracy(build)
    if "pipeline" in parts:
        rows += bench_pipeline(build, max(3, args.iters // 5), args.rounds)
    if "decode" in parts:
        rows += bench_decode(build, args.iters, args.rounds)
    if "cold" in parts:
        rows += bench_cold(build, 10)
    if "system" in parts:
        rows += bench_system(build, args.iters) + bench_system(build, args.iters, "int8")
    if "scale" in parts:
        rows += bench_scale_local(build) + bench_scale_sim(build)
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), "unknown CPU")
    print(f"imgcls bench, {cpu}, {os.cpu_count()} CPUs, medians of {args.rounds} interleaved rounds\n")
    print_table(rows)
    if args.json:
        print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

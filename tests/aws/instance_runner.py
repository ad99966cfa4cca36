"""Closes the AWS loop against moto: moto's Auto Scaling creates instance records but runs nothing.

`InstanceRunner` watches one Auto Scaling group in moto and plays the part of EC2 for it: for each
instance the group has, after a simulated boot delay, it starts a local `imgcls worker` running exactly
what the instance's user data would run (the launch template's cloud-init: the env file
/etc/imgcls/worker.env and the systemd unit's ExecStart), and when the instance leaves the group
(terminated by a scale-in) it stops that worker as the instance's shutdown would: SIGTERM, then wait.

Each simulated instance gets its own fake IMDS (fake_imds.py) and the worker is pointed at it, with the
static test credentials and AWS_EC2_METADATA_DISABLED taken out of its environment: its instance id,
region and credentials come from IMDS, as on EC2. AWS_ENDPOINT_URL stays: it stands in for the route
from the VPC to the AWS endpoints (here, moto on loopback).

The user-data contract (deploy/aws/ follows it): cloud-init YAML whose `write_files` has an entry at
/etc/imgcls/worker.env holding `IMGCLS_NAME=value` lines, and a systemd unit that runs
`/opt/imgcls/bin/imgcls worker` with EnvironmentFile=/etc/imgcls/worker.env. `user_data()` writes that
shape, for the tests that build their launch template with boto3 rather than CloudFormation.
"""

from __future__ import annotations

import base64
import email
import gzip
import os
import re
import shlex
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from fake_imds import FakeImds

ENV_FILE = "/etc/imgcls/worker.env"
INSTALLED_BINARY = "/opt/imgcls/bin/imgcls"
UNIT_PATH = "/etc/systemd/system/imgcls-worker.service"
REPO = Path(__file__).resolve().parents[2]
REPO_MODEL = REPO / "models" / "mobilenet_v2.imgw"

# What an EC2 instance does not have in its environment: the test's static keys (an instance gets role
# credentials from IMDS), the switch that turns IMDS off, and the region (the instance reads its own).
_NOT_ON_AN_INSTANCE = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
                       "AWS_EC2_METADATA_DISABLED", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_REGION",
                       "AWS_DEFAULT_REGION", "AWS_EC2_METADATA_SERVICE_ENDPOINT",
                       "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                       "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE")


def user_data(env: dict[str, str], exec_start: str = f"{INSTALLED_BINARY} worker") -> str:
    """Cloud-init user data in the contract's shape (see the module's docstring), base64-encoded as a
    launch template's UserData is."""
    unit = "\n".join([
        "[Unit]", "Description=imgcls worker", "After=network-online.target", "",
        "[Service]", f"EnvironmentFile={ENV_FILE}", f"ExecStart={exec_start}", "Restart=on-failure",
        "KillSignal=SIGTERM", "TimeoutStopSec=600", "",
        "[Install]", "WantedBy=multi-user.target", ""])
    doc = {
        "write_files": [
            {"path": ENV_FILE, "permissions": "0644", "content": "".join(f"{k}={v}\n" for k, v in env.items())},
            {"path": UNIT_PATH, "permissions": "0644", "content": unit},
        ],
        "runcmd": [["systemctl", "daemon-reload"], ["systemctl", "enable", "--now", "imgcls-worker.service"]],
    }
    text = "#cloud-config\n" + yaml.safe_dump(doc, sort_keys=False)
    return base64.b64encode(text.encode()).decode()


def _cloud_config(raw: bytes) -> dict:
    """The cloud-config document in user data: plain YAML, gzip'd, or a part of a MIME multipart."""
    if raw[:2] == b"\x1f\x8b":  # cloud-init accepts gzip'd user data
        raw = gzip.decompress(raw)
    text = raw.decode()
    if text.lstrip().lower().startswith(("content-type:", "mime-version:")):
        for part in email.message_from_string(text).walk():
            if part.get_content_type() == "text/cloud-config":
                text = part.get_payload(decode=True).decode()
                break
        else:
            raise AssertionError("user data is MIME multipart without a text/cloud-config part")
    doc = yaml.safe_load(text)
    assert isinstance(doc, dict), f"user data is not a cloud-config mapping:\n{text[:2000]}"
    return doc


def _file_content(entry: dict) -> str:
    content = entry.get("content", "")
    enc = str(entry.get("encoding", "")).lower()
    if enc in ("b64", "base64"):
        return base64.b64decode(content).decode()
    if enc in ("gz+b64", "gzip+base64", "gz+base64", "gzip+b64"):
        return gzip.decompress(base64.b64decode(content)).decode()
    return content


def parse_env_file(text: str) -> dict[str, str]:
    """systemd's EnvironmentFile syntax, the part a generated file uses: KEY=VALUE lines, # and ;
    comments, optional single or double quotes around the value."""
    env = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not KEY=VALUE in {ENV_FILE}: {line!r}"
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key.strip()] = value
    return env


def _expand(word: str, env: dict[str, str]) -> str:
    # systemd expands ${VAR} and $VAR in ExecStart from the unit's environment.
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: env.get(m[1] or m[2], ""), word)


def _exec_start(unit: str) -> str | None:
    return next((ln.split("=", 1)[1] for ln in unit.splitlines() if ln.strip().startswith("ExecStart=")), None)


def _runs_worker(unit: str) -> bool:
    line = _exec_start(unit)
    return bool(line) and re.search(r"(^|[\s/])imgcls\s+worker(\s|$)", line) is not None


@dataclass
class Launch:
    """What an instance of the launch template runs: its worker's environment (from the env file) and
    the arguments after the imgcls binary in the unit's ExecStart (["worker", ...])."""
    env: dict[str, str]
    args: list[str]
    user_data: str


def parse_user_data(b64: str) -> Launch:
    raw = base64.b64decode(b64)
    doc = _cloud_config(raw)
    files = {e.get("path"): _file_content(e) for e in doc.get("write_files") or []}
    assert ENV_FILE in files, f"user data writes no {ENV_FILE} (it writes {sorted(map(str, files))})"
    env = parse_env_file(files[ENV_FILE])
    units = [c for p, c in files.items() if str(p).endswith(".service") and _runs_worker(c)]
    if units:
        unit = units[0]
    else:  # the unit is installed with the release (deploy/aws/systemd/), not written by cloud-init
        found = sorted((REPO / "deploy").rglob("*.service")) if (REPO / "deploy").exists() else []
        found = [p.read_text() for p in found if _runs_worker(p.read_text())]
        assert len(found) == 1, f"not one worker unit in the user data or deploy/ ({len(found)})"
        unit = found[0]
    assert ENV_FILE in unit, f"the worker's unit does not read {ENV_FILE}:\n{unit}"
    line = _exec_start(unit)
    words = [_expand(w, env) for w in shlex.split(line.lstrip("-@+!:"))]
    at = next((i for i, w in enumerate(words) if w.endswith("/imgcls") or w == "imgcls"), None)
    assert at is not None, f"ExecStart does not run imgcls: {line}"
    args = words[at + 1:]
    assert args[:1] == ["worker"], f"the unit runs imgcls {' '.join(args)}, not a worker"
    return Launch(env, args, raw.decode(errors="replace"))


@dataclass
class Instance:
    id: str
    imds: FakeImds
    seen_at: float
    log: Path
    proc: subprocess.Popen | None = None
    started_at: float | None = None
    terminated_at: float | None = None  # when it left the group
    sigterm_at: float | None = None
    returncode: int | None = None
    killed: bool = False  # it did not stop on SIGTERM in time and was SIGKILLed
    unexpected_exit: bool = False  # its worker exited while the instance was still in the group
    env: dict = field(default_factory=dict)
    argv: list = field(default_factory=list)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else "(no log)"


class InstanceRunner:
    """A context manager: `with InstanceRunner(aws, "workers", imgcls, tmp) as r:` ... every process it
    started is gone when the block ends, whatever happened in it."""

    def __init__(self, aws, group: str, imgcls: Path, tmp: Path, boot_s: float = 1.0, poll_s: float = 0.2,
                 stop_timeout_s: float = 60.0, command: list[str] | None = None,
                 overrides: dict[str, str] | None = None, reconcile: bool = True):
        """command replaces the imgcls binary (a stand-in, for testing the runner itself: it gets the
        ExecStart's arguments after it). overrides are IMGCLS_* values that win over the env file, for a
        test that needs a setting the template has no parameter for; each is logged to the worker's log,
        so a reader sees where it departs from the user data. reconcile: see _reconcile."""
        self.aws, self.group, self.imgcls = aws, group, Path(imgcls)
        self.tmp = Path(tmp)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.boot_s, self.poll_s, self.stop_timeout_s = boot_s, poll_s, stop_timeout_s
        self.command, self.overrides = command, dict(overrides or {})
        self.reconcile, self.reconciled = reconcile, 0  # see _reconcile
        self.instances: dict[str, Instance] = {}
        self.max_alive = 0  # the most worker processes alive at once
        self.error: BaseException | None = None
        self._launches: dict[tuple, Launch] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"instance-runner-{group}", daemon=True)

    # --- what tests read ------------------------------------------------------------------------------
    def alive(self) -> list[Instance]:
        """Instances whose worker process is running now (those still finishing after SIGTERM included)."""
        with self._lock:
            return [i for i in self.instances.values() if i.alive()]

    def serving(self) -> list[Instance]:
        """Instances in the group whose worker runs and has not been asked to stop."""
        with self._lock:
            return [i for i in self.instances.values() if i.alive() and i.terminated_at is None]

    def started(self) -> list[Instance]:
        with self._lock:
            return [i for i in self.instances.values() if i.proc is not None]

    def failures(self) -> list[str]:
        """Workers that exited while their instance was in the group, or that had to be SIGKILLed, or
        that exited non-zero after SIGTERM: each with the end of its log."""
        with self._lock:
            out = []
            for i in self.instances.values():
                if i.unexpected_exit or i.killed or (i.returncode not in (None, 0)):
                    why = "exited on its own" if i.unexpected_exit else "SIGKILLed" if i.killed else "stopped"
                    out.append(f"{i.id}: {why}, status {i.returncode}:\n{i.log_tail()}")
            return out

    def check(self) -> None:
        """Fails at once when the runner's thread failed or a worker crashed or would not stop. systemd
        would restart a crashed worker (Restart=always); the runner does not, so a crash is seen here
        rather than hidden behind a restart."""
        if self.error is not None:
            raise AssertionError(f"the instance runner failed: {self.error!r}") from self.error
        bad = self.failures()
        assert not bad, "\n".join(bad)

    def describe(self) -> str:
        with self._lock:
            return ", ".join(f"{i.id}:{'alive' if i.alive() else 'down'}"
                             f"{'/terminated' if i.terminated_at else ''}" for i in self.instances.values())

    # --- the loop -------------------------------------------------------------------------------------
    def __enter__(self) -> "InstanceRunner":
        self._asg = self.aws.client("autoscaling")
        self._ec2 = self.aws.client("ec2")
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self._stop_all()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._tick()
            except BaseException as e:  # noqa: BLE001 - kept for the test to raise in its own thread
                self.error = e
                return
            self._stop.wait(self.poll_s)

    def _tick(self) -> None:
        groups = self._asg.describe_auto_scaling_groups(AutoScalingGroupNames=[self.group])["AutoScalingGroups"]
        assert groups, f"no Auto Scaling group {self.group}"
        g = groups[0]
        # An instance leaving service (Terminating*) is as good as gone: its shutdown has begun.
        members = {i["InstanceId"]: i for i in g.get("Instances", [])
                   if not i.get("LifecycleState", "InService").startswith(("Terminat", "Detach"))}
        if self.reconcile:
            self._reconcile(g, members)
        now = time.monotonic()
        with self._lock:
            for iid, desc in members.items():
                if iid not in self.instances:
                    self.instances[iid] = Instance(iid, FakeImds(iid, region=self.aws_region()), now,
                                                   self.tmp / f"worker-{iid}.log")
                inst = self.instances[iid]
                if inst.proc is None and now - inst.seen_at >= self.boot_s:
                    self._boot(inst, g, desc)
            for inst in self.instances.values():
                if inst.id not in members and inst.terminated_at is None:
                    inst.terminated_at = now
                    if inst.alive():
                        inst.proc.send_signal(signal.SIGTERM)
                        inst.sigterm_at = now
                self._reap(inst, now)
            self.max_alive = max(self.max_alive, sum(1 for i in self.instances.values() if i.alive()))

    def _reconcile(self, g: dict, members: dict) -> None:
        """What Auto Scaling does and moto does not: a group left above its desired capacity because the
        instances it would have removed were protected is brought down once some are no longer protected.
        moto only compares instances with desired inside SetDesiredCapacity, so a scale-in that met busy
        (protected) workers would leave the extra instances in the group forever, even after the workers
        cleared their protection; the same SetDesiredCapacity call with the group's own value makes moto
        do its comparison again. The desired value is read again just before, so a newer decision of the
        scaler is not replaced with an older one (and a scaler that did see one would set it again)."""
        if len(members) <= g["DesiredCapacity"] or all(m.get("ProtectedFromScaleIn") for m in members.values()):
            return
        now = self._asg.describe_auto_scaling_groups(AutoScalingGroupNames=[self.group])["AutoScalingGroups"][0]
        if now["DesiredCapacity"] == g["DesiredCapacity"]:
            self._asg.set_desired_capacity(AutoScalingGroupName=self.group, DesiredCapacity=now["DesiredCapacity"],
                                           HonorCooldown=False)
            self.reconciled += 1

    def _reap(self, inst: Instance, now: float) -> None:
        if inst.proc is None or inst.returncode is not None:
            return
        rc = inst.proc.poll()
        if rc is not None:
            inst.returncode = rc
            inst.unexpected_exit = inst.terminated_at is None
        elif inst.sigterm_at is not None and now - inst.sigterm_at > self.stop_timeout_s:
            inst.proc.kill()
            inst.killed = True
            inst.returncode = inst.proc.wait()

    def aws_region(self) -> str:
        return self.aws.env.get("AWS_REGION", "us-east-1")

    def launch_for(self, group: dict, desc: dict) -> Launch:
        """The user data of the launch template version this instance was launched from."""
        lt = desc.get("LaunchTemplate") or group.get("LaunchTemplate")
        if lt is None and group.get("MixedInstancesPolicy"):
            lt = group["MixedInstancesPolicy"]["LaunchTemplate"]["LaunchTemplateSpecification"]
        if lt is None:
            name = desc.get("LaunchConfigurationName") or group["LaunchConfigurationName"]
            key = ("lc", name)
            if key not in self._launches:
                lc = self._asg.describe_launch_configurations(LaunchConfigurationNames=[name])
                self._launches[key] = parse_user_data(lc["LaunchConfigurations"][0]["UserData"])
            return self._launches[key]
        version = str(lt.get("Version") or "$Default")
        ident = {"LaunchTemplateId": lt["LaunchTemplateId"]} if lt.get("LaunchTemplateId") else \
            {"LaunchTemplateName": lt["LaunchTemplateName"]}
        key = ("lt", tuple(ident.values()), version)
        if key not in self._launches or version.startswith("$"):  # $Latest/$Default may move
            v = self._ec2.describe_launch_template_versions(**ident, Versions=[version])["LaunchTemplateVersions"]
            assert v, f"no launch template version {version} for {ident}"
            ud = v[0]["LaunchTemplateData"].get("UserData")
            assert ud, f"launch template {ident} version {version} has no user data"
            self._launches[key] = parse_user_data(ud)
        return self._launches[key]

    def child_env(self, launch: Launch, inst: Instance) -> dict[str, str]:
        env = {k: v for k, v in self.aws.env.items()
               if k not in _NOT_ON_AN_INSTANCE and not k.startswith("IMGCLS_")}
        # No shared credentials file or config on the instance either (a developer's ~/.aws would win
        # over IMDS and hide whether the IMDS path works).
        env["AWS_SHARED_CREDENTIALS_FILE"] = str(self.tmp / "no-such-credentials")
        env["AWS_CONFIG_FILE"] = str(self.tmp / "no-such-config")
        env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = inst.imds.endpoint
        env.update(launch.env)
        # The env file names the model where the AMI installs it (/opt/imgcls/share/imgcls/...), which does
        # not exist on this machine: this one value is replaced with the repository's built model.
        if "IMGCLS_MODEL" in env:
            env["IMGCLS_MODEL"] = str(REPO_MODEL)
        env.update(self.overrides)
        return env

    def _boot(self, inst: Instance, group: dict, desc: dict) -> None:
        launch = self.launch_for(group, desc)
        inst.env = self.child_env(launch, inst)
        inst.argv = [*(self.command or [str(self.imgcls)]), *launch.args]
        with open(inst.log, "w") as log:
            log.write(f"# instance {inst.id}: {' '.join(inst.argv)}\n")
            log.write(f"# env file: {' '.join(f'{k}={v}' for k, v in launch.env.items())}\n")
            if self.overrides:
                log.write(f"# overridden by the test: {self.overrides}\n")
            log.flush()
            inst.proc = subprocess.Popen(inst.argv, env=inst.env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=self.tmp)
        inst.started_at = time.monotonic()

    def _stop_all(self) -> None:
        with self._lock:
            live = [i for i in self.instances.values() if i.alive()]
            for i in live:
                if i.sigterm_at is None:
                    i.proc.send_signal(signal.SIGTERM)
                    i.sigterm_at = time.monotonic()
            deadline = time.monotonic() + self.stop_timeout_s
            for i in live:
                try:
                    i.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    i.proc.kill()
                    i.killed = True
                    i.proc.wait()
            for i in self.instances.values():
                if i.proc is not None and i.returncode is None:
                    # exited since the last tick (or just now, above): record how, as _reap would have
                    i.returncode = i.proc.wait()
                    i.unexpected_exit = i.terminated_at is None and i.id not in {j.id for j in live}
                i.imds.close()


def make_group(aws, name: str, env: dict[str, str], min_size: int = 1, max_size: int = 5,
               desired: int | None = None) -> list[str]:
    """A launch template whose user data follows the contract (env -> worker.env) and an Auto Scaling
    group of it, built with boto3 for tests that need no CloudFormation. Returns the group's instances."""
    ec2, asg = aws.client("ec2"), aws.client("autoscaling")
    ec2.create_launch_template(LaunchTemplateName=f"{name}-lt", LaunchTemplateData={
        "ImageId": "ami-12c6146b",  # one of the AMIs moto knows; nothing boots it
        "InstanceType": "t3.micro",
        "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled"},  # IMDSv2 only
        "UserData": user_data(env)})
    asg.create_auto_scaling_group(AutoScalingGroupName=name, MinSize=min_size, MaxSize=max_size,
                                  DesiredCapacity=min_size if desired is None else desired,
                                  LaunchTemplate={"LaunchTemplateName": f"{name}-lt", "Version": "$Latest"},
                                  AvailabilityZones=[aws.env.get("AWS_REGION", "us-east-1") + "a"])
    return group_instances(aws, name)


def group(aws, name: str) -> dict:
    return aws.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]


def group_instances(aws, name: str) -> list[str]:
    return [i["InstanceId"] for i in group(aws, name)["Instances"]]


class Procs:
    """imgcls processes a test starts by hand (web, scaler, a worker), each logging to tmp/NAME.log; all
    of them get SIGTERM and are waited for (SIGKILL after 60 s) when the block ends."""

    def __init__(self, tmp: Path):
        self.tmp = Path(tmp)
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, argv: list, env: dict, stdout: bool = False) -> subprocess.Popen:
        """stdout=True keeps the process's stdout apart, in tmp/NAME.out (see out()), from its log lines."""
        assert name not in self.procs, name
        with open(self.tmp / f"{name}.log", "w") as log, open(self.tmp / f"{name}.out", "w") as out:
            p = subprocess.Popen([str(a) for a in argv], env=env, stdout=out if stdout else log,
                                 stderr=subprocess.STDOUT if not stdout else log, stdin=subprocess.DEVNULL)
        self.procs[name] = p
        return p

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")

    def out(self, name: str) -> str:
        return (self.tmp / f"{name}.out").read_text(errors="replace")

    def alive(self, name: str) -> bool:
        return self.procs[name].poll() is None

    def assert_alive(self, *names: str) -> None:
        for n in names or tuple(self.procs):
            assert self.alive(n), f"{n} exited with {self.procs[n].returncode}:\n{self.log(n)[-3000:]}"

    def stop(self, name: str, timeout: float = 60.0) -> int:
        p = self.procs[name]
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        try:
            return p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            raise AssertionError(f"{name} did not stop within {timeout} s of SIGTERM:\n{self.log(name)[-3000:]}")

    def __enter__(self) -> "Procs":
        return self

    def __exit__(self, *exc) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 60
        for p in self.procs.values():
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def wait_for(cond, timeout: float = 60.0, what: str = "condition", every: float = 0.1, check=None):
    """Polls cond until it is truthy; `check` runs each round (e.g. a runner's check) to fail early."""
    deadline = time.monotonic() + timeout
    while True:
        if check:
            check()
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def photo_folder(d: Path, photos: dict) -> list[Path]:
    """The real test photos (tests/conftest.py's PHOTOS) copied into one folder under their own names:
    the PNGs are over the web tier's 32 KiB inline limit, so they travel by claim check through S3."""
    d.mkdir(parents=True, exist_ok=True)
    out = []
    for name, (path, _) in photos.items():
        dst = d / f"{name}{path.suffix}"
        dst.write_bytes(path.read_bytes())
        out.append(dst)
    return out


def classify_labels(imgcls: Path, paths: list[Path]) -> dict[str, str]:
    """file name -> the label `imgcls classify --json` gives it (the answer the service must give)."""
    import json

    r = subprocess.run([str(imgcls), "classify", "--json", *map(str, paths)], capture_output=True, text=True,
                       check=True, env={k: v for k, v in os.environ.items() if not k.startswith("IMGCLS_")})
    return {j["file"]: j["label"] for j in map(json.loads, r.stdout.splitlines())}

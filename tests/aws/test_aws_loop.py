"""The AWS shape end to end, on moto: the stack's queues, buckets and Auto Scaling group, `imgcls web` and
`imgcls scaler` run here on them, and instance_runner.InstanceRunner playing EC2, so that each instance
the group launches runs what its user data says (a worker that learns who it is, and gets its
credentials, from its own IMDSv2). A burst of 100 concurrent requests must grow the group, be answered
with `imgcls classify`'s labels, and let the group shrink back to its minimum.

The first two tests check the harness itself with a stand-in for the worker, so that a failure of the
loop is not a failure of the harness in disguise.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import pytest
import requests

from conftest import free_port
from fake_imds import FakeImds
from instance_runner import (InstanceRunner, Procs, classify_labels, group, group_instances,
                             make_group, parse_user_data, photo_folder, user_data, wait_for)

GROUP = "imgcls-workers"

# --- the harness ---------------------------------------------------------------------------------------


def test_fake_imds_serves_imdsv2_only():
    with FakeImds("i-0123456789abcdef0", region="eu-west-1") as imds:
        base = imds.endpoint + "/latest"
        assert requests.get(base + "/meta-data/instance-id", timeout=5).status_code == 401  # IMDSv1: refused
        assert requests.put(base + "/api/token", timeout=5).status_code == 400  # the TTL header is required
        token = requests.put(base + "/api/token", headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"},
                             timeout=5).text
        h = {"X-aws-ec2-metadata-token": token}
        assert requests.get(base + "/meta-data/instance-id", headers=h, timeout=5).text == "i-0123456789abcdef0"
        assert requests.get(base + "/meta-data/placement/region", headers=h, timeout=5).text == "eu-west-1"
        role = requests.get(base + "/meta-data/iam/security-credentials/", headers=h, timeout=5).text
        creds = requests.get(base + f"/meta-data/iam/security-credentials/{role}", headers=h, timeout=5).json()
        assert creds["Code"] == "Success" and creds["Type"] == "AWS-HMAC"
        assert creds["AccessKeyId"] and creds["SecretAccessKey"] and creds["Token"]
        assert creds["Expiration"].endswith("Z") and creds["LastUpdated"].endswith("Z")
        assert requests.get(base + "/meta-data/instance-id", headers={"X-aws-ec2-metadata-token": "forged"},
                            timeout=5).status_code == 401
        assert imds.token_issued() and imds.instance_id_fetched() and imds.credentials_fetched()


# A stand-in worker: asks its IMDS who it is (IMDSv2), prints that and what it was given, and exits 0 on
# SIGTERM, as the real worker does after its batch.
STAND_IN = r"""
import json, os, signal, sys, time, urllib.request
e = os.environ["AWS_EC2_METADATA_SERVICE_ENDPOINT"] + "/latest"
t = urllib.request.urlopen(urllib.request.Request(e + "/api/token", method="PUT",
    headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"})).read().decode()
iid = urllib.request.urlopen(urllib.request.Request(e + "/meta-data/instance-id",
    headers={"X-aws-ec2-metadata-token": t})).read().decode()
print("STANDIN " + json.dumps({"iid": iid, "argv": sys.argv[1:], "env": dict(os.environ)}), flush=True)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
while True:
    time.sleep(0.05)
"""


def test_runner_runs_each_instances_user_data_and_stops_it_with_the_instance(aws, tmp_path):
    env = {"IMGCLS_QUEUE": "https://sqs.example/123/requests", "IMGCLS_FLEET": f"asg://{GROUP}",
           "IMGCLS_MODEL": "/opt/imgcls/share/imgcls/mobilenet_v2.imgw"}
    make_group(aws, GROUP, env)
    assert parse_user_data(user_data(env)).env == env
    stand_in = tmp_path / "stand_in.py"
    stand_in.write_text(STAND_IN)
    asg = aws.client("autoscaling")
    with InstanceRunner(aws, GROUP, Path("/nonexistent/imgcls"), tmp_path / "run", boot_s=0.3,
                        command=[sys.executable, str(stand_in)]) as r:
        wait_for(lambda: len(r.serving()) == 1, 30, "the first instance's worker", check=r.check)
        asg.set_desired_capacity(AutoScalingGroupName=GROUP, DesiredCapacity=3, HonorCooldown=False)
        wait_for(lambda: len(r.serving()) == 3, 30, "three workers", check=r.check)
        assert {i.id for i in r.serving()} == set(group_instances(aws, GROUP))

        def reports():
            out = {}
            for i in r.started():
                line = next((ln for ln in i.log.read_text().splitlines() if ln.startswith("STANDIN ")), None)
                if line:
                    out[i.id] = json.loads(line.split(" ", 1)[1])
            return out if len(out) == 3 else None

        for iid, rep in wait_for(reports, 30, "every stand-in to report").items():
            assert rep["iid"] == iid, "a worker got another instance's IMDS"
            assert rep["argv"] == ["worker"]
            e = rep["env"]
            assert e["IMGCLS_QUEUE"] == env["IMGCLS_QUEUE"] and e["IMGCLS_FLEET"] == env["IMGCLS_FLEET"]
            assert Path(e["IMGCLS_MODEL"]).name == "mobilenet_v2.imgw" and Path(e["IMGCLS_MODEL"]).exists()
            for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_EC2_METADATA_DISABLED", "AWS_REGION"):
                assert k not in e, f"{k} leaked into an instance's environment"
            assert e["AWS_ENDPOINT_URL"] == aws.endpoint
        # Scale-in meets two busy (protected) instances: only the idle one goes, and the group stays above
        # its desired capacity until one of the two lets go; then Auto Scaling (here the runner's
        # reconcile, standing in for it where moto does nothing) takes the group down to 1.
        a, b, c = group_instances(aws, GROUP)
        asg.set_instance_protection(AutoScalingGroupName=GROUP, InstanceIds=[a, b], ProtectedFromScaleIn=True)
        asg.set_desired_capacity(AutoScalingGroupName=GROUP, DesiredCapacity=1, HonorCooldown=False)
        wait_for(lambda: {i.id for i in r.serving()} == {a, b} and len(r.alive()) == 2, 30, "the idle one stopped",
                 check=r.check)
        asg.set_instance_protection(AutoScalingGroupName=GROUP, InstanceIds=[b], ProtectedFromScaleIn=False)
        wait_for(lambda: [i.id for i in r.serving()] == [a] and len(r.alive()) == 1, 30,
                 "the group brought down to its desired capacity", check=r.check)
        assert group_instances(aws, GROUP) == [a] and r.reconciled >= 1
    assert not r.failures(), r.failures()
    assert [i.returncode for i in r.instances.values()] == [0, 0, 0]
    assert not r.alive()


# --- the loop ------------------------------------------------------------------------------------------


def build_stack(aws, visibility: int) -> dict:
    """deploy/aws/template.yaml deployed into moto (tests/aws/stack_aws.py), in controller mode: the
    scaler that the web instance would run is started here instead (moto runs no instance)."""
    from stack_aws import deploy_stack

    return deploy_stack(aws, MinWorkers=1, MaxWorkers=5, VisibilityTimeout=visibility, ScalingMode="controller")


@pytest.fixture(scope="module")
def photo_files(tmp_path_factory, photos) -> list[Path]:
    return photo_folder(tmp_path_factory.mktemp("loop_photos"), photos)


@pytest.fixture(scope="module")
def labels(imgcls, photo_files) -> dict[str, str]:
    return classify_labels(imgcls, photo_files)


def test_a_burst_grows_the_group_is_answered_and_the_group_returns_to_its_minimum(aws, imgcls, tmp_path,
                                                                                 photo_files, labels):
    out = build_stack(aws, visibility=10)
    name = out["WorkerGroupName"]
    req, resp, inb, outb = out["RequestQueueUrl"], out["ResponseQueueUrl"], out["InputBucket"], out["OutputBucket"]
    inb, outb = (b if b.startswith("s3://") else f"s3://{b}" for b in (inb, outb))
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    desired_seen: list[int] = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            desired_seen.append(group(aws, name)["DesiredCapacity"])
            stop.wait(0.2)

    with Procs(tmp_path) as p, InstanceRunner(aws, name, imgcls, tmp_path / "instances", boot_s=1.0) as r:
        p.start("web", [imgcls, "web", "--port", port, "--queue", req, "--reply-queue", resp, "--in-bucket", inb,
                        "--out-bucket", outb, "--timeout", "240"], aws.env)
        p.start("scaler", [imgcls, "scaler", "--queue", req, "--fleet", f"asg://{name}", "--min-workers", "1",
                           "--max-workers", "5", "--interval-ms", "250", "--boot-ms", "1000",
                           "--scale-in-window-s", "3"], aws.env)

        def healthy():
            p.assert_alive()
            r.check()
            try:
                return requests.get(url + "healthz", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_for(healthy, 60, "the web tier")
        wait_for(lambda: len(r.serving()) == 1, 60, "the group's first worker", check=r.check)
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            lg = p.start("loadgen", [imgcls, "loadgen", "--num_request", "100", "--url", url, "--image_folder",
                                     photo_files[0].parent, "--concurrency", "100", "--json", "--verbose",
                                     "--request-timeout", "240"], aws.env, stdout=True)
            wait_for(lambda: lg.poll() is not None, 300, "the burst's answers",
                     check=lambda: (r.check(), p.assert_alive("web", "scaler")))
        finally:
            stop.set()
            watcher.join()
        lines = [json.loads(ln) for ln in p.out("loadgen").splitlines() if ln.strip()]
        summary = next(j for j in lines if "requests" in j)
        answers = [j for j in lines if "label" in j and "requests" not in j]
        assert lg.returncode == 0 and summary["ok"] == 100 and summary["errors"] == 0, (summary, p.log("loadgen")[-2000:])
        assert len(answers) == 100
        wrong = [(a["file"], a["label"], labels[a["file"]]) for a in answers if a["label"] != labels[a["file"]]]
        assert not wrong, f"answers that differ from imgcls classify: {wrong}"

        assert max(desired_seen) > 1, f"the group never grew: desired {sorted(set(desired_seen))}"
        assert r.max_alive > 1, f"only one worker process ever ran at a time: {r.describe()}"
        assert "comp=scaler event=scale direction=out" in p.log("scaler")

        wait_for(lambda: group(aws, name)["DesiredCapacity"] == 1 and len(group_instances(aws, name)) == 1
                 and len(r.alive()) == 1 and len(r.serving()) == 1, 120,
                 "the group and its workers back at the minimum",
                 check=lambda: (r.check(), p.assert_alive("web", "scaler")))
        assert "comp=scaler event=scale direction=in" in p.log("scaler")
        assert not r.failures(), "\n".join(r.failures())
        # Nothing left behind or given up on: both queues and the dead-letter queue are empty, and the
        # buckets hold the assignment's layout (input under the file name, "(name, label)" under the stem).
        sqs, s3 = aws.client("sqs"), aws.client("s3")
        for q in (req, resp, out["RequestDeadLetterQueueUrl"]):
            a = sqs.get_queue_attributes(QueueUrl=q, AttributeNames=["All"])["Attributes"]
            assert (a["ApproximateNumberOfMessages"], a["ApproximateNumberOfMessagesNotVisible"]) == ("0", "0"), q
        for f in photo_files:
            assert s3.get_object(Bucket=inb[5:], Key=f.name)["Body"].read() == f.read_bytes()
            got = s3.get_object(Bucket=outb[5:], Key=f.stem)["Body"].read().decode()
            assert got == f"({f.stem}, {labels[f.name]})", got
        # every worker that ran, ran as an EC2 instance does: identity and credentials from its IMDS
        for i in r.started():
            assert i.imds.token_issued() and i.imds.instance_id_fetched() and i.imds.credentials_fetched(), \
                f"{i.id} did not get its identity and credentials from IMDSv2:\n{i.log_tail()}"
        # Not asserted: that no request was classified twice. SQS is at-least-once, and moto's
        # ReceiveMessage checks and marks a message without a lock, so two workers polling at the same
        # moment now and then both get it (seen under the ASan build); the web tier then answers the client
        # once and logs the second response as event=unmatched_response, which is the design's answer.
        assert p.stop("scaler") == 0
        assert p.stop("web") == 0
    assert not r.failures(), "\n".join(r.failures())

"""The `asg://` fleet against moto's EC2 Auto Scaling, piece by piece (test_aws_loop.py runs the whole).

- `imgcls scaler` drives the group's desired capacity from the SQS queue's depth: up while the queue is
  deep, back to the minimum once it is empty, and never through a protected instance.
- `imgcls worker --fleet asg://GROUP...` marks its own instance protected from scale-in while it holds
  messages, and clears the mark once idle; it finds its instance either in the URL or from IMDSv2.

The group is built with boto3 here (instance_runner.make_group; no CloudFormation). moto's group honours
ProtectedFromScaleIn when the desired count goes down (it removes unprotected instances only), and its
instances are InService at once, running nothing: here nobody consumes the queue but the test.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import threading
from pathlib import Path

import pytest
import requests

from conftest import free_port
from fake_imds import FakeImds
from instance_runner import (_NOT_ON_AN_INSTANCE, Procs, classify_labels, group, group_instances,
                             make_group, photo_folder, wait_for)

GROUP = "workers"
NAMESPACE = "imgcls-test"


def scaler_args(queue: str, *extra) -> list:
    # --boot-ms: the policy starts only workers that would arrive in time to help; with the default 30 s
    # a backlog of 200 at the default 50 img/s (4 s of work) would rightly start nobody.
    return ["scaler", "--queue", queue, "--fleet", f"asg://{GROUP}", "--min-workers", "1", "--max-workers", "5",
            "--interval-ms", "250", "--boot-ms", "500", "--scale-in-window-s", "2", *extra]


def fill(aws, queue: str, n: int) -> None:
    sqs = aws.client("sqs")
    for start in range(0, n, 10):
        sqs.send_message_batch(QueueUrl=queue, Entries=[
            {"Id": str(i), "MessageBody": '{"v":1,"filler":true}'} for i in range(start, min(n, start + 10))])


def test_scaler_follows_the_queue_depth(aws, imgcls, tmp_path):
    make_group(aws, GROUP, {"IMGCLS_QUEUE": "unused"})
    queue = aws.queue("requests")
    fill(aws, queue, 200)
    with Procs(tmp_path) as p:
        p.start("scaler", [imgcls, *scaler_args(queue)], aws.env)
        # 200 requests that nobody takes: the backlog policy asks for more than the one worker
        grown = wait_for(lambda: group(aws, GROUP)["DesiredCapacity"] > 1, 60, "the desired capacity to rise",
                         check=lambda: p.assert_alive("scaler"))
        assert grown
        g = group(aws, GROUP)
        assert g["DesiredCapacity"] <= 5, "the scaler went over --max-workers"
        wait_for(lambda: len(group_instances(aws, GROUP)) > 1, 30, "moto to launch the extra instances")
        assert "comp=scaler event=scale direction=out" in p.log("scaler")

        aws.client("sqs").purge_queue(QueueUrl=queue)
        wait_for(lambda: group(aws, GROUP)["DesiredCapacity"] == 1 and len(group_instances(aws, GROUP)) == 1, 90,
                 "the group back at its minimum after the queue emptied", check=lambda: p.assert_alive("scaler"))
        assert "comp=scaler event=scale direction=in" in p.log("scaler")

        assert p.stop("scaler") == 0
    assert "level=error" not in p.log("scaler"), p.log("scaler")[-3000:]


def test_scaler_publishes_what_it_sees_to_cloudwatch(aws, imgcls, tmp_path):
    """--cloudwatch-namespace: each tick's depth and fleet go to CloudWatch (PutMetricData), for alarms
    and dashboards. Which metric names it uses is the scaler's business; that they arrive is the test's."""
    make_group(aws, GROUP, {"IMGCLS_QUEUE": "unused"})
    queue = aws.queue("requests")
    fill(aws, queue, 20)
    cw = aws.client("cloudwatch")
    with Procs(tmp_path) as p:
        p.start("scaler", [imgcls, *scaler_args(queue, "--cloudwatch-namespace", NAMESPACE, "--cloudwatch-period-s", "1")],
                aws.env)
        metrics = wait_for(lambda: cw.list_metrics(Namespace=NAMESPACE)["Metrics"], 30,
                           f"metrics in CloudWatch namespace {NAMESPACE}", check=lambda: p.assert_alive("scaler"))
        assert p.stop("scaler") == 0
    # Some metric carries the queue's depth: 20 messages sat there, untouched, the whole time.
    now = datetime.datetime.now(datetime.timezone.utc)
    highest = {}
    for m in metrics:
        points = cw.get_metric_statistics(Namespace=NAMESPACE, MetricName=m["MetricName"],
                                          Dimensions=m.get("Dimensions", []), Statistics=["Maximum"], Period=60,
                                          StartTime=now - datetime.timedelta(minutes=10),
                                          EndTime=now + datetime.timedelta(minutes=1))["Datapoints"]
        highest[m["MetricName"]] = max((d["Maximum"] for d in points), default=None)
    assert 20 in highest.values(), f"no metric shows the queue's 20 messages: {highest}"


def test_scaler_never_scales_in_a_protected_instance(aws, imgcls, tmp_path):
    ids = make_group(aws, GROUP, {"IMGCLS_QUEUE": "unused"}, desired=3)
    assert len(ids) == 3
    busy = ids[1]
    # as a busy worker's SetInstanceProtection would
    aws.client("autoscaling").set_instance_protection(AutoScalingGroupName=GROUP, InstanceIds=[busy],
                                                      ProtectedFromScaleIn=True)
    queue = aws.queue("requests")
    with Procs(tmp_path) as p:
        p.start("scaler", [imgcls, *scaler_args(queue)], aws.env)
        wait_for(lambda: group(aws, GROUP)["DesiredCapacity"] == 1 and len(group_instances(aws, GROUP)) == 1, 90,
                 "an empty queue to take the group to its minimum", check=lambda: p.assert_alive("scaler"))
        assert group_instances(aws, GROUP) == [busy], "the protected instance was scaled in"
        assert p.stop("scaler") == 0


# --- a worker marks its own instance -------------------------------------------------------------------

@pytest.fixture(scope="module")
def photo_files(tmp_path_factory, photos) -> list[Path]:
    return photo_folder(tmp_path_factory.mktemp("asg_photos"), photos)


@pytest.fixture(scope="module")
def labels(imgcls, photo_files) -> dict[str, str]:
    return classify_labels(imgcls, photo_files)


def protection(aws, iid: str) -> bool | None:
    for i in group(aws, GROUP)["Instances"]:
        if i["InstanceId"] == iid:
            return i["ProtectedFromScaleIn"]
    return None


def serve_under_watch(aws, imgcls, tmp_path, photo_files, labels, iid, fleet, worker_env) -> list[bool]:
    """A web tier and one worker (fleet URL `fleet`, environment worker_env) on SQS and S3; 40 requests at
    once while a thread records the instance's ProtectedFromScaleIn. Every answer is checked; returns
    the protection values seen, and leaves the worker idle until its protection is cleared."""
    q = aws.queue("requests", max_receives=5)
    replies = aws.queue("responses")
    inb, outb = aws.bucket("imgcls-in"), aws.bucket("imgcls-out")
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    seen: list[bool] = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            seen.append(bool(protection(aws, iid)))
            stop.wait(0.1)

    with Procs(tmp_path) as p:
        p.start("web", [imgcls, "web", "--port", port, "--queue", q, "--reply-queue", replies, "--in-bucket", inb,
                        "--out-bucket", outb, "--timeout", "120"], aws.env)
        p.start("worker", [imgcls, "worker", "--queue", q, "--in-bucket", inb, "--out-bucket", outb, "--fleet", fleet,
                           "--visibility", "10", "--wait-ms", "500"], worker_env)

        def healthy():
            p.assert_alive()
            try:
                return requests.get(url + "healthz", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_for(healthy, 60, "the web tier")
        assert protection(aws, iid) is False, "protected before it had any work"
        t = threading.Thread(target=watch, daemon=True)
        t.start()
        try:
            def post(path: Path):
                with open(path, "rb") as f:
                    return path, requests.post(url, files={"myfile": (path.name, f)}, timeout=180)

            with concurrent.futures.ThreadPoolExecutor(40) as pool:
                answers = list(pool.map(post, [photo_files[i % len(photo_files)] for i in range(40)]))
            for path, r in answers:
                assert r.status_code == 200 and r.text == labels[path.name], (path.name, r.status_code, r.text,
                                                                               p.log("worker")[-2000:])
            # Idle again: the worker lets its instance go (after a few seconds, its own choice).
            wait_for(lambda: protection(aws, iid) is False and seen and seen[-1] is False, 60,
                     "the idle worker to clear its scale-in protection", check=lambda: p.assert_alive("worker"))
        finally:
            stop.set()
            t.join()
        assert p.stop("worker") == 0, p.log("worker")[-3000:]
        assert p.stop("web") == 0
    return seen


def test_worker_protects_its_instance_while_it_holds_messages(aws, imgcls, tmp_path, photo_files, labels):
    [iid] = make_group(aws, GROUP, {"IMGCLS_QUEUE": "unused"})
    seen = serve_under_watch(aws, imgcls, tmp_path, photo_files, labels, iid, f"asg://{GROUP}?instance={iid}",
                             aws.env)
    assert True in seen, "the instance was never protected from scale-in while its worker held messages"


def test_worker_finds_its_instance_and_credentials_through_imdsv2(aws, imgcls, tmp_path, photo_files, labels):
    """Without ?instance= the worker asks IMDSv2 who it is, and with no static keys in its environment it
    signs with the instance role's credentials from IMDS: the path every EC2 worker takes."""
    [iid] = make_group(aws, GROUP, {"IMGCLS_QUEUE": "unused"})
    with FakeImds(iid) as imds:
        env = {k: v for k, v in aws.env.items() if k not in _NOT_ON_AN_INSTANCE}
        env.update(AWS_EC2_METADATA_SERVICE_ENDPOINT=imds.endpoint,
                   AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-such-credentials"),
                   AWS_CONFIG_FILE=str(tmp_path / "no-such-config"))
        seen = serve_under_watch(aws, imgcls, tmp_path, photo_files, labels, iid, f"asg://{GROUP}", env)
        assert True in seen, "the instance named by IMDS was never protected while its worker held messages"
        assert imds.token_issued(), "the worker never asked for an IMDSv2 token"
        assert imds.instance_id_fetched(), "the worker never asked IMDS for its instance id"
        assert imds.credentials_fetched(), "the worker never fetched the role's credentials from IMDS"
        assert not [s for s in imds.requests if s.status == 401], \
            f"IMDS requests without a valid token: {[s for s in imds.requests if s.status == 401]}"

"""moto's server on 127.0.0.1 for every AWS test: the AWS code paths are proven against an independent
implementation of the wire protocols on loopback, never against AWS itself.

`moto` is one server for the session; each test that uses `aws` gets it reset to empty first, so tests
never see each other's queues, buckets or groups. `aws.env` is the environment a child process needs to
talk to it: the endpoint, fake credentials and a region, and IMDS switched off (the instance-role path is
tested against tests/aws/fake_imds.py instead).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
# The same build directory as tests/conftest.py (this conftest shadows that module's name here).
BUILD = Path(os.environ.get("IMGCLS_BUILD_DIR", REPO / "build"))
if not BUILD.is_absolute():
    BUILD = REPO / BUILD

ACCOUNT = "123456789012"  # moto's default account
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Moto:
    def __init__(self, port: int, log: Path):
        self.endpoint = f"http://127.0.0.1:{port}"
        self.log = log
        self.env = {
            **os.environ,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_SHARED_CREDENTIALS_FILE"):
            self.env.pop(k, None)

    def client(self, service: str):
        import boto3

        return boto3.client(service, endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def reset(self) -> None:
        requests.post(self.endpoint + "/moto-api/reset", timeout=10).raise_for_status()

    def queue(self, name: str, max_receives: int = 0, visibility: int = 30) -> str:
        """Creates queue `name` (with `name`-dlq as its dead-letter queue when max_receives > 0) and
        returns its URL exactly as GetQueueUrl gives it."""
        import json

        sqs = self.client("sqs")
        attrs = {"VisibilityTimeout": str(visibility)}
        if max_receives:
            dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            attrs["RedrivePolicy"] = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": str(max_receives)})
        sqs.create_queue(QueueName=name, Attributes=attrs)
        return sqs.get_queue_url(QueueName=name)["QueueUrl"]

    def bucket(self, name: str) -> str:
        self.client("s3").create_bucket(Bucket=name)
        return f"s3://{name}"


@pytest.fixture(scope="session")
def moto(tmp_path_factory) -> Moto:
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)
    m = Moto(port, log)
    deadline = time.monotonic() + 60
    while True:
        try:
            requests.get(m.endpoint + "/moto-api/", timeout=1)
            break
        except requests.ConnectionError:
            assert proc.poll() is None, f"moto_server exited: {log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, "moto_server did not start within 60 s"
            time.sleep(0.1)
    yield m
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture
def aws(moto) -> Moto:
    moto.reset()
    return moto

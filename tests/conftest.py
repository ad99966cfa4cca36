"""Shared fixtures: where the binaries, the model and the real test photos are.

The binaries come from IMGCLS_BUILD_DIR (default build/), so `make test` can run the same tests
against the release build and the ASan+UBSan build. Real photos come from packages that ship them
(scikit-image, matplotlib, Debian's darknet); none is committed.
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

REPO = Path(__file__).resolve().parents[1]
BUILD = Path(os.environ.get("IMGCLS_BUILD_DIR", REPO / "build"))
if not BUILD.is_absolute():
    BUILD = REPO / BUILD
MODEL = REPO / "models" / "mobilenet_v2.imgw"
WEIGHTS = REPO / "models" / "mobilenet_v2-b0353104.pth"


def _skimage_data(name: str) -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data" / name


def _mpl_data(name: str) -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "sample_data" / name


# name -> (path, ImageNet indices of which one must be in the top 5)
CAT = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat
PHOTOS = {
    "chelsea": (_skimage_data("chelsea.png"), CAT),
    "coffee": (_skimage_data("coffee.png"), {967, 968, 504}),  # espresso, cup, coffee mug
    "grace_hopper": (_mpl_data("grace_hopper.jpg"), {652}),  # military uniform
    "dog": (Path("/usr/share/darknet/data/dog.jpg"), set(range(151, 269))),  # any dog breed
    "eagle": (Path("/usr/share/darknet/data/eagle.jpg"), {21, 22, 23}),  # kite, bald eagle, vulture
}


@pytest.fixture(scope="session")
def imgcls() -> Path:
    path = BUILD / "imgcls"
    assert path.exists(), f"{path} is missing: run `make` first"
    return path


@pytest.fixture(scope="session")
def engine_dump() -> Path:
    path = BUILD / "engine_dump"
    assert path.exists(), f"{path} is missing: run `make` first"
    return path


@pytest.fixture(scope="session")
def model() -> Path:
    assert MODEL.exists(), f"{MODEL} is missing: run `make models`"
    return MODEL


@pytest.fixture(scope="session")
def photos() -> dict:
    for name, (path, _) in PHOTOS.items():
        assert path.exists(), f"test photo {name} missing at {path} (see scripts/bootstrap.sh)"
    return PHOTOS

# ---- AWS: moto's server on 127.0.0.1 (tests/aws) ----
#
# moto's server on 127.0.0.1 for every AWS test: the AWS code paths are proven against an independent
# implementation of the wire protocols on loopback, never against AWS itself.
#
# `moto` is one server for the session; each test that uses `aws` gets it reset to empty first, so tests
# never see each other's queues, buckets or groups. `aws.env` is the environment a child process needs to
# talk to it: the endpoint, fake credentials and a region, and IMDS switched off (the instance-role path is
# tested against tests/aws/fake_imds.py instead).
# (Here rather than in tests/aws/conftest.py: a second module named conftest would shadow this one
# for every test that imports from it.)

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

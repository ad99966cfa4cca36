"""The signed AWS client (src/aws) seen from the wire: every backend's requests carry a SigV4 signature
that botocore's own signer agrees with, credentials come from the environment, the shared file or the
instance role in that order, and failures are retried only when they are temporary. The endpoint is
tests/aws/capture.py, a recording stand-in, so the tests can script throttling, errors and silence."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
from urllib.parse import unquote

import pytest

from capture import Capture
from conftest import BUILD
from fake_imds import FakeImds

KEY, SECRET, TOKEN = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "session-token-from-sts"
INSTANCE = "i-0123456789abcdef0"


@pytest.fixture
def cap():
    c = Capture(secrets={KEY: SECRET, "AKIAFILEPROD": "file-secret", "AKIAFILEDEFAULT": "dflt",
                         "ASIAFAKEIMDSKEY00001": "fake-imds-secret"}).start()
    yield c
    c.stop()


def base_env(endpoint: str, tmp_path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ENDPOINT_URL=endpoint, AWS_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true",
               HOME=str(tmp_path))
    return env


def env_creds(endpoint, tmp_path) -> dict:
    return {**base_env(endpoint, tmp_path), "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET,
            "AWS_SESSION_TOKEN": TOKEN}


def tool(env, *args, stdin: bytes = b"", timeout=60) -> subprocess.CompletedProcess:
    exe = BUILD / "aws_tool"
    assert exe.exists(), f"{exe} is missing: run `make` first"
    return subprocess.run([exe, *args], input=stdin, env=env, capture_output=True, timeout=timeout)


def test_every_backend_signs_as_botocore_does(cap, tmp_path):
    env = env_creds(cap.endpoint, tmp_path)
    name = "my dog+é%.jpg"
    steps = [
        (["store-put", "s3://imgcls-in", name], b"\xff\xd8 jpeg bytes"),
        (["store-get", "s3://imgcls-in", ".imgcls/results/0123.json"], b""),
        (["store-link", "s3://imgcls-in", ".imgcls/claims/0123", "my photo+1.jpg"], b""),  # CopyObject
        (["store-put", "s3://imgcls-in", ".imgcls/claims/0123"], bytes(range(256)) * 8192),  # 2 MiB: Expect?
        (["queue-send", cap.endpoint + "/123456789012/requests"], b'{"v":1,"file":"\xc3\xa9"}'),
        (["fleet-describe", "asg://stack-workers"], b""),
        (["fleet-set", "asg://stack-workers", "3"], b""),
        (["fleet-report", f"asg://stack-workers?instance={INSTANCE}", "busy"], b""),
        (["metric", "imgcls", "BacklogPerInstance", "7"], b""),
    ]
    for args, stdin in steps:
        r = tool(env, *args, stdin=stdin)
        assert r.returncode == 0, (args, r.stderr.decode())
    assert len(cap.seen) >= len(steps)
    for s in cap.seen:
        assert s.signature_ok, (s.method, s.path, s.canonical)
        assert s.access_key == KEY
        assert s.headers.get("X-Amz-Security-Token") == TOKEN and "x-amz-security-token" in s.signed_headers
    services = {s.service for s in cap.seen}
    assert services == {"s3", "sqs", "autoscaling", "monitoring"}
    put = next(s for s in cap.seen if s.method == "PUT" and "x-amz-copy-source" not in s.headers)
    # path-style on an endpoint of our own, the key URI-encoded byte by byte, the payload hash signed
    assert put.path == "/imgcls-in/my%20dog%2B%C3%A9%25.jpg" and unquote(put.path.split("/")[2]) == name
    assert put.headers["x-amz-content-sha256"] == hashlib.sha256(b"\xff\xd8 jpeg bytes").hexdigest()
    assert "x-amz-content-sha256" in put.signed_headers
    assert any(s.method == "HEAD" and s.path == "/imgcls-in" for s in cap.seen)  # HeadBucket at open
    copy = next(s for s in cap.seen if "x-amz-copy-source" in s.headers)
    assert copy.method == "PUT" and copy.path == "/imgcls-in/my%20photo%2B1.jpg"
    assert copy.headers["x-amz-copy-source"] == "/imgcls-in/.imgcls/claims/0123" and "x-amz-copy-source" in copy.signed_headers
    get = next(s for s in cap.seen if s.method == "GET")
    assert get.path == "/imgcls-in/.imgcls/results/0123.json"
    forms = [s.body.decode() for s in cap.seen if s.service == "autoscaling"]
    assert any("Action=SetDesiredCapacity" in f and "DesiredCapacity=3" in f and "HonorCooldown=false" in f
               for f in forms)
    assert any("Action=SetInstanceProtection" in f and f"InstanceIds.member.1={INSTANCE}" in f and
               "ProtectedFromScaleIn=true" in f for f in forms)
    sqs = [s for s in cap.seen if s.service == "sqs"]
    assert [s.headers["X-Amz-Target"] for s in sqs] == ["AmazonSQS.GetQueueUrl", "AmazonSQS.SendMessage"]


CREDS_FILE = """# two profiles
[default]
aws_access_key_id = AKIAFILEDEFAULT
aws_secret_access_key = dflt

[prod]
aws_access_key_id=AKIAFILEPROD
aws_secret_access_key = file-secret
"""


def test_credentials_file_and_profile(cap, tmp_path):
    f = tmp_path / "creds"
    f.write_text(CREDS_FILE)
    env = {**base_env(cap.endpoint, tmp_path), "AWS_SHARED_CREDENTIALS_FILE": str(f)}
    assert tool(env, "fleet-set", "asg://g", "1").returncode == 0
    assert tool({**env, "AWS_PROFILE": "prod"}, "fleet-set", "asg://g", "1").returncode == 0
    assert [s.access_key for s in cap.seen] == ["AKIAFILEDEFAULT", "AKIAFILEPROD"]
    assert all(s.signature_ok and "X-Amz-Security-Token" not in s.headers for s in cap.seen)
    # ~/.aws/credentials when no file is named
    (tmp_path / ".aws").mkdir()
    (tmp_path / ".aws" / "credentials").write_text(CREDS_FILE)
    assert tool(base_env(cap.endpoint, tmp_path), "fleet-set", "asg://g", "1").returncode == 0
    assert cap.seen[-1].access_key == "AKIAFILEDEFAULT"
    # the environment comes first
    assert tool(env_creds(cap.endpoint, tmp_path), "fleet-set", "asg://g", "1").returncode == 0
    assert cap.seen[-1].access_key == KEY


def test_instance_role_through_imdsv2(cap, tmp_path):
    with FakeImds(instance_id=INSTANCE, region="eu-west-1") as imds:
        env = base_env(cap.endpoint, tmp_path)
        del env["AWS_EC2_METADATA_DISABLED"], env["AWS_REGION"]
        env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = imds.endpoint
        r = tool(env, "fleet-report", "asg://g", "busy")  # no ?instance=: the id comes from IMDS too
        assert r.returncode == 0, r.stderr.decode()
        assert imds.token_issued() and imds.credentials_fetched() and imds.instance_id_fetched()
    s = cap.seen[-1]
    assert s.signature_ok and s.access_key == "ASIAFAKEIMDSKEY00001"
    assert s.headers["X-Amz-Security-Token"] == "fake-imds-session-token"
    assert "/eu-west-1/autoscaling/" in s.headers["Authorization"]  # the region from IMDS
    assert f"InstanceIds.member.1={INSTANCE}" in s.body.decode()


def test_no_credentials_is_a_clear_error(cap, tmp_path):
    r = tool(base_env(cap.endpoint, tmp_path), "fleet-set", "asg://g", "1")
    assert r.returncode == 1
    err = r.stderr.decode()
    assert "no AWS credentials" in err and "AWS_ACCESS_KEY_ID" in err and "IMDS" in err
    # a path too long to hold is refused, never cut short into the name of another file
    r = tool({**base_env(cap.endpoint, tmp_path), "AWS_SHARED_CREDENTIALS_FILE": "/tmp/" + "x" * 1100},
             "fleet-set", "asg://g", "1")
    assert r.returncode == 1 and "over 1023 bytes" in r.stderr.decode()
    assert cap.seen == []


def sqs_error(code: str, status=400):
    return status, {"Content-Type": "application/x-amz-json-1.0"}, (
        '{"__type":"com.amazonaws.sqs#%s","message":"scripted"}' % code).encode()


def test_temporary_failures_are_retried(cap, tmp_path):
    env = env_creds(cap.endpoint, tmp_path)
    cap.script["SendMessage"] = [sqs_error("ThrottlingException"), (503, {}, b"<html>busy</html>"),
                                 sqs_error("InternalError", 500)]
    r = tool(env, "queue-send", cap.endpoint + "/123456789012/requests", stdin=b"{}")
    assert r.returncode == 0, r.stderr.decode()
    assert [s.headers["X-Amz-Target"] for s in cap.seen].count("AmazonSQS.SendMessage") == 4


def test_permanent_failures_are_not_retried(cap, tmp_path):
    env = env_creds(cap.endpoint, tmp_path)
    cap.script["SetDesiredCapacity"] = [(400, {"Content-Type": "text/xml"},
                                         b"<ErrorResponse><Error><Type>Sender</Type><Code>ValidationError</Code>"
                                         b"<Message>New SetDesiredCapacity value 99 is above max value 19</Message>"
                                         b"</Error><RequestId>rid-77</RequestId></ErrorResponse>")]
    r = tool(env, "fleet-set", "asg://g", "99")
    err = r.stderr.decode()
    assert r.returncode == 1 and err.startswith("EINVAL")
    assert "ValidationError" in err and "above max value 19" in err and "request_id=req-123" in err
    assert len(cap.seen) == 1
    cap.script["GetQueueUrl"] = [sqs_error("QueueDoesNotExist")]
    r = tool(env, "queue-send", cap.endpoint + "/123456789012/nope", stdin=b"{}")
    assert r.returncode == 1 and r.stderr.decode().startswith("ENOTFOUND") and len(cap.seen) == 2


def test_persistent_5xx_gives_up(cap, tmp_path):
    cap.script["SetDesiredCapacity"] = [(500, {}, b"")] * 10
    r = tool(env_creds(cap.endpoint, tmp_path), "fleet-set", "asg://g", "2")
    assert r.returncode == 1 and r.stderr.decode().startswith("EBACKEND")
    assert len(cap.seen) == 5  # AWS_MAX_ATTEMPTS, then the caller hears of it


def test_answers_are_bounded_and_parsed(cap, tmp_path):
    env = env_creds(cap.endpoint, tmp_path)
    cap.script["DescribeAutoScalingGroups"] = [(200, {}, b"<a>" + b"x" * (5 << 20) + b"</a>"),
                                               (200, {}, b"<DescribeAutoScalingGroupsResponse><unclosed>"),
                                               (200, {}, b"<R><AutoScalingGroups/></R>")]
    r = tool(env, "fleet-describe", "asg://g")
    assert r.returncode == 1 and r.stderr.decode().startswith("ETOOBIG")  # over 4 MiB: not read, not retried
    r = tool(env, "fleet-describe", "asg://g")
    assert r.returncode == 1 and r.stderr.decode().startswith("ECORRUPT")
    r = tool(env, "fleet-describe", "asg://g")
    assert r.returncode == 1 and r.stderr.decode().startswith("ENOTFOUND")
    assert len(cap.seen) == 3


def test_dead_endpoint_fails_fast(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = env_creds(f"http://127.0.0.1:{port}", tmp_path)
    r = tool(env, "fleet-set", "asg://g", "1", timeout=30)
    assert r.returncode == 1 and r.stderr.decode().startswith("EBACKEND")
    assert "after 5 tries" in r.stderr.decode()


@pytest.mark.slow  # two tries of 10 s each: the point is that it ends
def test_silent_endpoint_times_out(cap, tmp_path):
    cap.script["SetDesiredCapacity"] = ["hang", "hang", "hang"]
    r = tool(env_creds(cap.endpoint, tmp_path), "fleet-set", "asg://g", "1", timeout=60)
    assert r.returncode == 1 and r.stderr.decode().startswith("ETIMEDOUT")
    assert len(cap.seen) == 2  # AWS_MAX_TIMEOUTS


def test_instance_role_credentials_are_renewed_before_they_expire(cap, tmp_path):
    # 120 s left is inside the five-minute margin: every call must fetch fresh ones first
    with FakeImds(instance_id=INSTANCE, credential_lifetime_s=120) as imds:
        env = base_env(cap.endpoint, tmp_path)
        del env["AWS_EC2_METADATA_DISABLED"]
        env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = imds.endpoint
        r = tool(env, "queue-send", cap.endpoint + "/123456789012/requests", stdin=b"{}")  # two calls
        assert r.returncode == 0, r.stderr.decode()
        fetches = imds.seen("/latest/meta-data/iam/security-credentials/imgcls-worker")
        assert len(fetches) >= 3  # at open, then before each of GetQueueUrl and SendMessage
    with FakeImds(instance_id=INSTANCE) as imds:  # six hours: fetched once
        env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = imds.endpoint
        assert tool(env, "queue-send", cap.endpoint + "/123456789012/requests", stdin=b"{}").returncode == 0
        assert len(imds.seen("/latest/meta-data/iam/security-credentials/imgcls-worker")) == 1
    assert all(s.signature_ok for s in cap.seen)


def test_s3_virtual_hosted_addressing(cap, tmp_path):
    # curl resolves *.localhost to loopback itself, so a bucket host name needs no DNS here
    port = cap.endpoint.rsplit(":", 1)[1]
    env = env_creds(f"http://localhost:{port}", tmp_path)
    r = tool(env, "store-put", "s3://imgcls-in?addressing=virtual", "a b+c.jpg", stdin=b"x")
    assert r.returncode == 0, r.stderr.decode()
    put = next(s for s in cap.seen if s.method == "PUT")
    assert put.headers["Host"] == f"imgcls-in.localhost:{port}" and put.path == "/a%20b%2Bc.jpg"
    assert put.signature_ok


def test_per_service_endpoint_wins(cap, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    env = {**env_creds(f"http://127.0.0.1:{dead}", tmp_path), "AWS_ENDPOINT_URL_AUTO_SCALING": cap.endpoint}
    assert tool(env, "fleet-set", "asg://g", "2").returncode == 0
    assert cap.seen[-1].service == "autoscaling"

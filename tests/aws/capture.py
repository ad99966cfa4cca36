"""A stand-in AWS endpoint on 127.0.0.1 that records every request and checks its SigV4 signature with
botocore's own signer, an implementation independent of libcurl's. It answers each request with the
next scripted reply for that operation (default: a plausible success), so that tests can also script
throttling, 5xx, permanent errors and silence."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from dataclasses import dataclass, field

from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


@dataclass
class Seen:
    method: str
    path: str
    headers: dict
    body: bytes
    service: str
    access_key: str
    signed_headers: list
    signature_ok: bool
    canonical: str = ""


def _op(handler, body: bytes) -> str:
    target = handler.headers.get("X-Amz-Target")
    if target:
        return target.split(".")[-1]
    if body.startswith(b"Action="):
        return body.split(b"&")[0][7:].decode()
    return handler.command  # S3: by method


@dataclass
class Capture:
    secrets: dict  # access key id -> secret, to verify signatures
    seen: list = field(default_factory=list)
    script: dict = field(default_factory=dict)  # op -> list of (status, headers, body) or "hang"

    def start(self):
        cap = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def handle_one(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                cap.seen.append(cap._verify(self, body))
                op = _op(self, body)
                replies = cap.script.get(op) or []
                reply = replies.pop(0) if replies else cap._default(op, self)
                if reply == "hang":
                    self.close_connection = True
                    threading.Event().wait(30)
                    return
                status, hdrs, out = reply
                self.send_response(status)
                for k, v in {"x-amzn-RequestId": "req-123", **hdrs}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(out)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = handle_one

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def _default(self, op, h):
        if op == "GetQueueUrl":
            return 200, {"Content-Type": "application/x-amz-json-1.0"}, json.dumps(
                {"QueueUrl": self.endpoint + "/123456789012/requests"}).encode()
        if h.headers.get("X-Amz-Target"):
            return 200, {"Content-Type": "application/x-amz-json-1.0"}, b'{"MessageId":"m-1","MD5OfMessageBody":"x"}'
        if op == "DescribeAutoScalingGroups":
            return 200, {"Content-Type": "text/xml"}, (
                b"<DescribeAutoScalingGroupsResponse><DescribeAutoScalingGroupsResult><AutoScalingGroups><member>"
                b"<DesiredCapacity>2</DesiredCapacity><Instances><member><InstanceId>i-1</InstanceId>"
                b"<LifecycleState>InService</LifecycleState><ProtectedFromScaleIn>false</ProtectedFromScaleIn>"
                b"</member></Instances></member></AutoScalingGroups></DescribeAutoScalingGroupsResult>"
                b"</DescribeAutoScalingGroupsResponse>")
        if op.startswith(("Set", "Put")) and op[0].isupper() and op not in ("PUT",):
            return 200, {"Content-Type": "text/xml"}, b"<R/>"
        if op == "GET":
            return 200, {}, b"object-bytes"
        return 200, {}, b""

    def _verify(self, h, body: bytes) -> Seen:
        auth = h.headers.get("Authorization", "")
        try:
            cred = auth.split("Credential=")[1].split(",")[0].split("/")
            access_key, region, service = cred[0], cred[2], cred[3]
            signed = auth.split("SignedHeaders=")[1].split(",")[0].split(";")
            got = auth.split("Signature=")[1].strip()
        except IndexError:
            return Seen(h.command, h.path, dict(h.headers), body, "", "", [], False)
        amzdate = h.headers["X-Amz-Date"]
        hdrs = {k: v for k, v in h.headers.items() if k.lower() in signed and k.lower() != "host"}
        req = AWSRequest(method=h.command, url="http://" + h.headers["Host"] + h.path, data=body, headers=hdrs)
        token = h.headers.get("X-Amz-Security-Token")
        creds = Credentials(access_key, self.secrets.get(access_key, "?"), token)
        signer_cls = S3SigV4Auth if service == "s3" else SigV4Auth
        signer = signer_cls(creds, service, region)
        req.context["timestamp"] = amzdate
        if "X-Amz-Date" in req.headers:
            del req.headers["X-Amz-Date"]
        req.headers["X-Amz-Date"] = amzdate
        canonical = signer.canonical_request(req)
        sig = signer.signature(signer.string_to_sign(req, canonical), req)
        ok = sig == got and signer.signed_headers(signer.headers_to_sign(req)) == ";".join(signed)
        if service == "s3":
            ok = ok and h.headers.get("x-amz-content-sha256") == hashlib.sha256(body).hexdigest()
        return Seen(h.command, h.path, dict(h.headers), body, service, access_key, signed, ok, canonical)

"""A tiny EC2 instance metadata service (IMDSv2) on 127.0.0.1, one per simulated instance.

On EC2 a worker learns who it is (instance id, region) and gets its instance role's credentials from
IMDS; the tests give each simulated instance its own server on its own port, and point the worker at it
with AWS_EC2_METADATA_SERVICE_ENDPOINT, so the same code path runs here as on an instance.

Only IMDSv2 is served: every GET needs the session token from PUT /latest/api/token, as on an instance
that requires tokens (HttpTokens=required, which the launch template asks for). A GET without a valid
token gets 401, so a client that falls back to IMDSv1 fails here instead of passing by accident.

Every request is recorded (method, path, whether its token was valid), so a test can assert that the
token was used and the role's credentials were fetched, not merely that something worked.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN_PATH = "/latest/api/token"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
CREDS_PREFIX = "/latest/meta-data/iam/security-credentials/"


@dataclass
class Seen:
    method: str
    path: str
    status: int
    token_ok: bool  # the request carried a token this server issued and that had not expired


def _iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class FakeImds:
    instance_id: str
    region: str = "us-east-1"
    role: str = "imgcls-worker"
    access_key_id: str = "ASIAFAKEIMDSKEY00001"
    secret_access_key: str = "fake-imds-secret"
    session_token: str = "fake-imds-session-token"
    # How long the served credentials claim to be valid. Real ones last about 6 h; a client refreshes a
    # few minutes before Expiration, so anything much longer than a test run means "never refreshes".
    credential_lifetime_s: int = 6 * 3600
    requests: list[Seen] = field(default_factory=list)

    def __post_init__(self):
        self._tokens: dict[str, float] = {}  # token -> monotonic expiry
        self._lock = threading.Lock()
        imds = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep pytest's output clean; `requests` is the record
                pass

            def _reply(self, status: int, body: str = "", ctype: str = "text/plain", token_ok=False):
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                with imds._lock:
                    imds.requests.append(Seen(self.command, self.path, status, token_ok))

            def do_PUT(self):
                n = int(self.headers.get("Content-Length") or 0)
                if n:
                    self.rfile.read(n)
                if self.path != TOKEN_PATH:
                    return self._reply(404, "Not Found")
                ttl = self.headers.get(TTL_HEADER)
                # As IMDS does: the TTL header is required and must be 1..21600 s.
                if ttl is None or not ttl.strip().isdigit() or not 1 <= int(ttl) <= 21600:
                    return self._reply(400, "Bad Request")
                token = secrets.token_urlsafe(32)
                with imds._lock:
                    imds._tokens[token] = time.monotonic() + int(ttl)
                self._reply(200, token)

            def do_GET(self):
                token = self.headers.get(TOKEN_HEADER)
                with imds._lock:
                    expiry = imds._tokens.get(token or "")
                ok = expiry is not None and time.monotonic() < expiry
                if not ok:
                    return self._reply(401, "Unauthorized")
                status, body, ctype = imds._get(self.path.split("?", 1)[0])
                self._reply(status, body, ctype, token_ok=True)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"imds-{self.instance_id}",
                                        daemon=True)
        self._thread.start()

    def _get(self, path: str) -> tuple[int, str, str]:
        if path == CREDS_PREFIX:  # the role attached to the instance profile
            return 200, self.role, "text/plain"
        if path == CREDS_PREFIX + self.role:
            now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
            return 200, json.dumps({
                "Code": "Success",
                "LastUpdated": _iso(now),
                "Type": "AWS-HMAC",
                "AccessKeyId": self.access_key_id,
                "SecretAccessKey": self.secret_access_key,
                "Token": self.session_token,
                "Expiration": _iso(now + dt.timedelta(seconds=self.credential_lifetime_s)),
            }, indent=2), "application/json"  # IMDS pretty-prints it; a client must not care
        simple = {
            "/latest/meta-data/instance-id": self.instance_id,
            "/latest/meta-data/placement/region": self.region,
            "/latest/meta-data/placement/availability-zone": self.region + "a",
        }
        if path in simple:
            return 200, simple[path], "text/plain"
        if path == "/latest/dynamic/instance-identity/document":
            return 200, json.dumps({"instanceId": self.instance_id, "region": self.region,
                                    "availabilityZone": self.region + "a", "accountId": "123456789012"}), \
                "application/json"
        return 404, "Not Found", "text/plain"

    # What tests ask of the record.
    def seen(self, path: str, method: str = "GET", ok_only: bool = True) -> list[Seen]:
        with self._lock:
            return [s for s in self.requests if s.path.split("?", 1)[0] == path and s.method == method
                    and (s.status == 200 or not ok_only)]

    def token_issued(self) -> bool:
        return bool(self.seen(TOKEN_PATH, "PUT"))

    def credentials_fetched(self) -> bool:
        return bool(self.seen(CREDS_PREFIX + self.role))

    def instance_id_fetched(self) -> bool:
        return bool(self.seen("/latest/meta-data/instance-id"))

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> "FakeImds":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

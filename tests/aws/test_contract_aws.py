"""The queue and store contract suites of the local stack (tests/unit/test_*_contract.c), run against
the sqs and s3 backends on moto's server: same tests, same assertions, one more row each."""

from __future__ import annotations

import subprocess

import pytest

from conftest import BUILD


@pytest.mark.parametrize("suite,row", [("test_queue_contract", "sqs (moto)"), ("test_store_contract", "s3 (moto)")])
def test_contract_suite_on_moto(aws, suite, row):
    exe = BUILD / suite
    assert exe.exists(), f"{exe} is missing: run `make` first"
    r = subprocess.run([exe], env={**aws.env, "IMGCLS_TEST_AWS": "1"}, capture_output=True, text=True, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-6000:]
    # the AWS row really ran (it is skipped, saying so, without IMGCLS_TEST_AWS)
    assert "skipped here" not in out
    assert f"[==========] {row}" in out or row in out, out[-3000:]
    assert "FAILED" not in out

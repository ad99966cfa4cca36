"""The configuration reference in docs/ is what the binary's own option tables say."""

import subprocess

from conftest import REPO


def test_configuration_reference_is_current(imgcls):
    generated = subprocess.run([REPO / "scripts" / "gen-config-doc.sh", imgcls], capture_output=True, text=True,
                               check=True).stdout
    assert (REPO / "docs" / "configuration.md").read_text() == generated, "run `make docs` and commit the result"


def test_every_subcommand_has_help(imgcls):
    for sub in ["up", "worker", "classify", "bench"]:
        r = subprocess.run([imgcls, sub, "--help"], capture_output=True, text=True)
        assert r.returncode == 0 and "usage: imgcls " + sub in r.stdout

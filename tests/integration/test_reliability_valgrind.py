"""tests/valgrind.sh from pytest: the release build (build/proxy/mongotap, or $MT_VALGRIND_BIN)
under valgrind memcheck through one scenario, failing on any memory error or any definitely or
indirectly lost block. The ASan build that the rest of the suite runs cannot go under valgrind,
so this test needs the normal build; without it (or without valgrind) it is reported as
skipped, with the reason."""

import os
import shutil
import subprocess

import pytest

import helpers


def test_valgrind_clean_run():
    binary = os.environ.get("MT_VALGRIND_BIN") or os.path.join(helpers.ROOT, "build", "proxy",
                                                                "mongotap")
    if not shutil.which("valgrind"):
        pytest.skip("valgrind is not installed (apt-get install valgrind)")
    if not os.access(binary, os.X_OK):
        pytest.skip("%s not built: scripts/build.sh normal" % binary)
    env = dict(os.environ, MT_VALGRIND_BIN=binary)
    r = subprocess.run([os.path.join(helpers.ROOT, "tests", "valgrind.sh")], env=env,
                       capture_output=True, text=True, timeout=300)
    print(r.stdout)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-20000:]
    assert "valgrind: ok (0 errors" in r.stdout

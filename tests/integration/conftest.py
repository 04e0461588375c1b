"""pytest fixtures for the integration tests: a real jongodb server, mongotap processes in front of
it, and checks at teardown that each mongotap exited 0 with no sanitizer report on stderr."""

import itertools
import os
import re
import signal
import sys

import pymongo
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import helpers  # noqa: E402

# scripts the tests run as commands, not tests themselves (ci/app_test.py is a test suite in
# miniature for `mongotap run`)
collect_ignore = ["ci"]


def pytest_configure(config):
    # A missing binary is a failure with a clear message, never a silent skip.
    try:
        helpers.mongotap_bin()
        helpers.jongodb_bin()
    except helpers.SetupError as e:
        raise pytest.UsageError(str(e))


@pytest.fixture(scope="module")
def jongodb():
    """host:port of a jongodb server shared by the tests of one module."""
    server = helpers.Jongodb()
    try:
        yield server.address
    finally:
        server.kill()


@pytest.fixture(scope="module")
def seed(jongodb):
    """A pymongo client straight to jongodb, for seeding data outside mongotap's view."""
    client = pymongo.MongoClient("mongodb://%s/?directConnection=true" % jongodb)
    yield client
    client.close()


@pytest.fixture
def jongodb_factory():
    """Starts extra jongodb servers (jongodb_factory(port=N) -> helpers.Jongodb)."""
    started = []

    def start(port=0):
        server = helpers.Jongodb(port=port)
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()


_UPSTREAM_JONGODB = object()


def _has_flag(args, flag):
    return any(a == flag or a.startswith(flag + "=") for a in args)


@pytest.fixture
def mongotap(request):
    """Factory: mongotap(*extra_args, upstream=<jongodb>|"host:port"|None, env={}) -> Mongotap.

    Adds `--listen 127.0.0.1:0 --admin 127.0.0.1:0 --upstream <jongodb>` unless the extra
    args give those flags (upstream=None leaves --upstream out, e.g. to test MONGOTAP_UPSTREAM).
    At teardown each still-running mongotap gets SIGTERM and must exit 0; no mongotap may have
    printed a sanitizer report."""
    started = []

    def start(*args, upstream=_UPSTREAM_JONGODB, env=None, startup_timeout=30):
        args = [str(a) for a in args]
        extra = []
        if not _has_flag(args, "--listen"):
            extra += ["--listen", "127.0.0.1:0"]
        if not _has_flag(args, "--admin"):
            extra += ["--admin", "127.0.0.1:0"]
        if upstream is _UPSTREAM_JONGODB:
            upstream = request.getfixturevalue("jongodb")
        if upstream is not None and not _has_flag(args, "--upstream"):
            extra += ["--upstream", upstream]
        tap = helpers.Mongotap(extra + args, env=env, startup_timeout=startup_timeout)
        started.append(tap)
        return tap

    yield start

    problems = []
    for tap in started:
        running = tap.running()
        rc = tap.stop(signal.SIGTERM)
        if running and rc != 0:
            problems.append("mongotap %s exited %s after SIGTERM" % (" ".join(tap.args[1:]), rc))
        found = tap.sanitizer_reports()
        if found:
            problems.append("mongotap %s printed %s; stderr:\n%s"
                            % (" ".join(tap.args[1:]), ", ".join(found), tap.logs()[-20000:]))
    assert not problems, "\n".join(problems)


_db_counter = itertools.count(1)


@pytest.fixture
def dbname(request):
    """A database name unique to this test (jongodb has no dropDatabase worth relying on)."""
    base = re.sub(r"[^A-Za-z0-9]", "_", request.node.name)[:40]
    return "%s_%d_%d" % (base, os.getpid() % 10000, next(_db_counter))


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    """A directory with the test CA and certificates of tests/fixtures/make_certs.sh."""
    return helpers.make_certs(str(tmp_path_factory.mktemp("certs")))


@pytest.fixture
def stunnel(tmp_path):
    """Factory: stunnel(connect, cert=..., key=..., client=..., ...) -> helpers.Stunnel, killed
    at teardown."""
    started = []

    def start(connect, **kw):
        s = helpers.Stunnel(connect, str(tmp_path), **kw)
        started.append(s)
        return s

    yield start
    for s in started:
        s.kill()

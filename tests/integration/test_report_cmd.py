"""`mongotap report`: fetches /api/report from a running mongotap in each format, to stdout or a
file, with or without the admin token; unreachable or refusing admin endpoints exit 1 with one
line, bad flags exit 2."""

import json
import os
import subprocess

import pytest

import helpers
import lazy_scenario


def report(*args, env=None):
    full_env = None
    if env is not None:
        full_env = dict(os.environ)
        full_env.update(env)
    return subprocess.run([helpers.mongotap_bin(), "report"] + list(args), stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=60, env=full_env)


@pytest.fixture(scope="module")
def tap_with_finding(request, jongodb):
    """A mongotap (admin token "tok") that has seen the lazy N+1 scenario."""
    tap = helpers.Mongotap(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--upstream", jongodb,
                            "--admin-token", "tok"])
    try:
        lazy_scenario.run(tap.uri("report_cmd"))
        finding = lazy_scenario.wait_for_finding(tap, token="tok")
        yield tap, finding
    finally:
        rc = tap.stop()
        assert rc == 0, tap.logs()
        assert not tap.sanitizer_reports(), tap.logs()


def test_json_to_stdout_matches_the_api(tap_with_finding):
    tap, finding = tap_with_finding
    r = report("--admin", tap.admin_url, "--token", "tok", "--format", "json")
    assert r.returncode == 0, r.stderr
    assert r.stderr == b""
    got = json.loads(r.stdout)
    api = tap.get_json("/api/report?format=json", token="tok")
    assert sorted(got) == sorted(api)
    assert finding["id"] in [f["id"] for f in got["findings"]], got["findings"]


def test_json_is_the_default_format(tap_with_finding):
    tap, _ = tap_with_finding
    r = report("--admin", tap.admin_url, "--token", "tok")
    assert r.returncode == 0, r.stderr
    assert isinstance(json.loads(r.stdout), dict)


def test_markdown_to_stdout(tap_with_finding):
    tap, _ = tap_with_finding
    r = report("--admin", tap.admin_url, "--token", "tok", "--format", "markdown")
    assert r.returncode == 0, r.stderr
    text = r.stdout.decode()
    status, _, body = tap.get("/api/report?format=markdown", token="tok")
    assert status == 200
    assert text.lstrip().startswith("#"), text[:200]
    assert "channel" in text and "|" in text, text[:2000]
    assert text.splitlines()[0] == body.decode().splitlines()[0]


def test_html_to_a_file(tap_with_finding, tmp_path):
    tap, _ = tap_with_finding
    out = tmp_path / "report.html"
    r = report("--admin", tap.admin_url, "--token", "tok", "--format", "html", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert r.stdout == b""
    html = out.read_text()
    assert "<html" in html.lower() and "channel" in html, html[:500]


def test_env_vars_and_flags_win(tap_with_finding):
    tap, _ = tap_with_finding
    env = {"MONGOTAP_ADMIN_URL": tap.admin_url, "MONGOTAP_TOKEN": "tok"}
    r = report("--format", "json", env=env)
    assert r.returncode == 0, r.stderr
    json.loads(r.stdout)
    r = report("--token", "wrong", env=env)
    assert r.returncode == 1, "the flag's token is used, not the environment's"


def test_missing_token_is_one_line_exit_1(tap_with_finding, tmp_path):
    tap, _ = tap_with_finding
    out = tmp_path / "never.json"
    r = report("--admin", tap.admin_url, "-o", str(out))
    assert r.returncode == 1
    lines = r.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "401" in lines[0], r.stderr
    assert not out.exists(), "nothing is written on failure"


def test_unreachable_admin_is_one_line_exit_1():
    url = "http://127.0.0.1:%d" % helpers.free_port()
    r = report("--admin", url)
    assert r.returncode == 1
    assert r.stdout == b""
    lines = r.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "cannot reach" in lines[0] and url in lines[0], r.stderr


def test_unwritable_output_exit_1(tap_with_finding, tmp_path):
    tap, _ = tap_with_finding
    r = report("--admin", tap.admin_url, "--token", "tok", "-o", str(tmp_path / "no" / "such" / "dir.json"))
    assert r.returncode == 1
    assert len(r.stderr.decode().strip().splitlines()) == 1, r.stderr


@pytest.mark.parametrize("args, flag", [
    (["--format", "pdf"], "--format"),
    (["--format"], "--format"),
    (["--admin", "ftp://x"], "--admin"),
    (["--nope"], "--nope"),
    (["-o", ""], "-o"),
    (["stray"], "stray"),
])
def test_bad_flags_exit_2(args, flag):
    r = report(*args)
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and flag in lines[0], r.stderr

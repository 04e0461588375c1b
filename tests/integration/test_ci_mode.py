"""CI mode end to end: `mongotap run -- COMMAND` over a real mongoengine (and a mongoose) test
script against jongodb. The verdict (exit status), the summary on stderr, the baseline file,
mongotap:ignore and --ignore-ns, signals passed on to COMMAND, no process left behind, the
connection string COMMAND gets, $GITHUB_STEP_SUMMARY and `mongotap baseline`."""

import json
import os
import signal
import subprocess
import sys
import time

import pymongo
import pytest

import helpers

APP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ci", "app_test.py")
MONGOOSE = os.path.join(helpers.NODE_DIR, "ci_mongoose_test.mjs")
GAP = ["--window-gap-ms", "500"]  # far above a lookup's round trip, even under ASan
N_SHOWS = 12


@pytest.fixture(scope="module")
def seed(jongodb):
    client = pymongo.MongoClient("mongodb://%s/?directConnection=true" % jongodb)
    yield client
    client.close()


@pytest.fixture
def guide(seed, dbname, jongodb):
    """The TV guide seeded into a fresh database; returns the MONGODB_URI the app would use."""
    db = seed[dbname]
    db.channel.insert_many([{"_id": i, "name": "channel %d" % i} for i in range(4)])
    db.person.insert_many([{"_id": 100 + i, "name": "host %d" % i} for i in range(6)])
    db.show.insert_many([{"_id": 1000 + i, "title": "show %d" % i, "channel": i % 4,
                          "host": 100 + i % 6} for i in range(N_SHOWS)])
    return "mongodb://%s/%s?retryWrites=false&appName=guide" % (jongodb, dbname)


@pytest.fixture
def books(seed, dbname, jongodb):
    db = seed[dbname]
    db.authors.insert_many([{"_id": i, "name": "author %d" % i} for i in range(7)])
    db.books.insert_many([{"_id": i, "title": "book %d" % i, "authorId": i % 7}
                          for i in range(20)])
    return "mongodb://%s/%s" % (jongodb, dbname)


def env_with(**kv):
    env = dict(os.environ)
    for k in ("MONGODB_URI", "MONGOTAP_URI", "GITHUB_STEP_SUMMARY", "MONGOTAP_UPSTREAM",
              "MONGOTAP_IGNORE_NS", "DB_URL"):
        env.pop(k, None)
    env.update({k: str(v) for k, v in kv.items() if v is not None})
    return env


def no_sanitizer_report(text):
    found = [m for m in helpers.SANITIZER_MARKERS if m in text]
    assert not found, "mongotap printed %s:\n%s" % (found, text[-20000:])


def run(*args, uri=None, env=None, timeout=120):
    """`mongotap run ARGS` with MONGODB_URI=uri; returns the CompletedProcess (text)."""
    full = env_with(MONGODB_URI=uri, **(env or {}))
    r = subprocess.run([helpers.mongotap_bin(), "run"] + [str(a) for a in args],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
                       env=full, cwd=helpers.ROOT)
    no_sanitizer_report(r.stderr)
    return r


def app(mode):
    return ["--", sys.executable, APP, mode]


def summary(r):
    """The lines mongotap run wrote about the run (COMMAND's own output left out)."""
    return [line for line in r.stderr.splitlines() if line.startswith("mongotap run: ")]


def verdict(r):
    return summary(r)[-1]


# --- the verdict -------------------------------------------------------------------------------

def test_lazy_loop_fails_and_prints_the_finding(guide, dbname):
    r = run(*GAP, *app("lazy"), uri=guide)
    assert r.returncode == 1, r.stderr
    text = "\n".join(summary(r))
    new = [line for line in summary(r) if " NEW n_plus_one high: " in line]
    assert len(new) == 1, text
    assert "%s.show find {}" % dbname in new[0] and "%s.channel find" % dbname in new[0], new[0]
    assert "field channel" in new[0] and "%d child command(s)" % N_SHOWS in new[0], new[0]
    assert "fix: " in text and "select_related()" in text, text
    assert "findings: n_plus_one 1 high, 0 medium" in text, text
    assert verdict(r).startswith("mongotap run: FAIL: 1 new high-confidence"), verdict(r)
    assert "(exit 1)" in verdict(r)


def test_fixed_loop_passes(guide):
    r = run(*GAP, *app("fixed"), uri=guide)
    assert r.returncode == 0, r.stderr
    assert "mongotap run: findings: none" in r.stderr, r.stderr
    assert verdict(r).startswith("mongotap run: ok: "), verdict(r)


def test_failing_command_status_wins(guide):
    r = run(*GAP, *app("fail"), uri=guide)
    assert r.returncode == 5, r.stderr
    assert "app_test: the page is missing its footer" in r.stderr
    # the N+1 is still reported, but the command's own failure decides
    assert any(" NEW n_plus_one high: " in line for line in summary(r)), r.stderr
    assert "exited with status 5 (exit 5)" in verdict(r), verdict(r)


def test_command_killed_by_a_signal_gives_128_plus_it():
    r = run("--", "/bin/sh", "-c", "kill -TERM $$")
    assert r.returncode == 128 + signal.SIGTERM, r.stderr
    assert "killed by signal 15" in verdict(r), verdict(r)


def test_command_not_found_is_127():
    r = run("--", "/nonexistent/command")
    assert r.returncode == 127, r.stderr
    assert "could not be started" in verdict(r), verdict(r)


def test_fail_on_medium_and_types(guide, dbname):
    # --fail-on without n_plus_one: the loop is reported but does not gate
    r = run(*GAP, "--fail-on", "write_loop", *app("lazy"), uri=guide)
    assert r.returncode == 0, r.stderr
    assert any("new (not gating) n_plus_one high" in line for line in summary(r)), r.stderr
    # --n1-threshold above the number of shows: nothing to find at all
    r = run(*GAP, "--n1-threshold", N_SHOWS + 1, "--fail-on-medium", *app("lazy"), uri=guide)
    assert r.returncode == 0, r.stderr
    assert "findings: none" in r.stderr


# --- baselines ---------------------------------------------------------------------------------

def test_baseline_accepts_the_loop_and_a_second_loop_fails(guide, dbname, tmp_path):
    base = tmp_path / "baseline.json"
    r = run(*GAP, "--write-baseline", base, *app("lazy"), uri=guide)
    assert r.returncode == 1, "writing a baseline does not change the verdict: %s" % r.stderr
    doc = json.loads(base.read_text())
    assert doc["schema"] == "mongotap.baseline/1"
    assert len(doc["entries"]) == 1, doc
    entry = doc["entries"][0]
    assert set(entry) == {"type", "parent", "children", "field", "reason"}, entry
    assert entry["type"] == "n_plus_one" and entry["field"] == "channel" and entry["reason"] == ""
    assert entry["parent"] == {"db": dbname, "collection": "show", "command": "find",
                               "shape": "{}"}, entry
    assert entry["children"]["collection"] == "channel"
    assert json.loads(entry["children"]["shape"]) == {"_id": "?"}

    # accepted, with a reason filled in during review
    entry["reason"] = "the guide lists twelve shows"
    base.write_text(json.dumps(doc, indent=2))
    r = run(*GAP, "--baseline", base, *app("lazy"), uri=guide)
    assert r.returncode == 0, r.stderr
    assert any(line.startswith("mongotap run: baselined n_plus_one high: ") for line in summary(r))
    assert "0 stale baseline entries" in r.stderr

    # a second, new loop (show.host) is not in the baseline
    r = run(*GAP, "--baseline", base, "--write-baseline", tmp_path / "next.json", *app("two"),
            uri=guide)
    assert r.returncode == 1, r.stderr
    new = [line for line in summary(r) if " NEW n_plus_one high: " in line]
    assert len(new) == 1 and ".person find" in new[0] and "field host" in new[0], r.stderr
    assert "1 new, 1 baselined" in r.stderr
    # the rewritten baseline keeps the reviewed reason and adds the new loop with an empty one
    nxt = json.loads((tmp_path / "next.json").read_text())["entries"]
    reasons = {e["children"]["collection"]: e["reason"] for e in nxt}
    assert reasons == {"channel": "the guide lists twelve shows", "person": ""}, nxt


def test_stale_baseline_entry_is_reported(guide, dbname, tmp_path):
    base = tmp_path / "baseline.json"
    base.write_text(json.dumps({"schema": "mongotap.baseline/1", "entries": [
        {"type": "n_plus_one",
         "parent": {"db": dbname, "collection": "show", "command": "find", "shape": "{}"},
         "children": {"db": dbname, "collection": "channel", "command": "find",
                      "shape": "{\"_id\": \"?\"}"},
         "field": "channel", "reason": "fixed since"}]}))
    r = run(*GAP, "--baseline", base, *app("fixed"), uri=guide)
    assert r.returncode == 0, r.stderr
    stale = [line for line in summary(r) if "stale baseline entry 1: " in line]
    assert len(stale) == 1, r.stderr
    assert "%s.channel" % dbname in stale[0] and str(base) in stale[0], stale[0]
    assert "1 stale baseline entry" in r.stderr


@pytest.mark.parametrize("content, says", [
    ("{not json", "not valid JSON"),
    ('{"schema": "mongotap.baseline/9", "entries": []}', "mongotap.baseline/9"),
    ('{"schema": "mongotap.baseline/1", "entries": [{"type": "n_plus_one"}]}',
     "entry 1: parent is missing"),
])
def test_bad_baseline_is_exit_2(tmp_path, content, says):
    base = tmp_path / "baseline.json"
    base.write_text(content)
    r = run("--baseline", base, "--", "/bin/true")
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "--baseline" in lines[0] and says in lines[0], r.stderr


def test_mongotap_baseline_writes_what_a_proxy_saw(mongotap, guide, dbname, tmp_path):
    tap = mongotap(*GAP)
    uri = guide.replace(guide.split("/")[2], tap.address)
    seen = subprocess.run([sys.executable, APP, "lazy"], env=env_with(MONGODB_URI=uri),
                          capture_output=True, text=True, timeout=60)
    assert seen.returncode == 0, seen.stderr
    deadline = time.monotonic() + 10
    while not tap.get_json("/api/findings")["patterns"]:
        assert time.monotonic() < deadline, "no pattern after the lazy listing"
        time.sleep(0.05)
    base = tmp_path / "baseline.json"
    b = subprocess.run([helpers.mongotap_bin(), "baseline", "--admin", tap.admin_url, "-o",
                        str(base)], capture_output=True, text=True, timeout=60)
    assert b.returncode == 0, b.stderr
    no_sanitizer_report(b.stderr)
    entries = json.loads(base.read_text())["entries"]
    assert [e["children"]["collection"] for e in entries] == ["channel"], entries
    # that file accepts the same loop in CI
    r = run(*GAP, "--baseline", base, *app("lazy"), uri=guide)
    assert r.returncode == 0, r.stderr
    # unreachable admin: one line, exit 1
    url = "http://127.0.0.1:%d" % helpers.free_port()
    b = subprocess.run([helpers.mongotap_bin(), "baseline", "--admin", url, "-o",
                        str(tmp_path / "never.json")], capture_output=True, text=True, timeout=60)
    assert b.returncode == 1 and len(b.stderr.strip().splitlines()) == 1, b.stderr
    assert "cannot reach" in b.stderr and not (tmp_path / "never.json").exists()


# --- ignoring on purpose -----------------------------------------------------------------------

def test_mongotap_ignore_comment_suppresses(guide):
    r = run(*GAP, *app("tagged"), uri=guide)
    assert r.returncode == 0, r.stderr
    assert "findings: none" in r.stderr, r.stderr


def test_ignore_ns_suppresses(guide, dbname):
    r = run(*GAP, "--ignore-ns", "%s.channel" % dbname, *app("lazy"), uri=guide)
    assert r.returncode == 0, r.stderr
    assert "findings: none" in r.stderr, r.stderr
    # the parent's namespace works too, and so does the variable, for a whole database
    r = run(*GAP, *app("lazy"), uri=guide, env={"MONGOTAP_IGNORE_NS": "other.x,%s.*" % dbname})
    assert r.returncode == 0, r.stderr
    assert "findings: none" in r.stderr, r.stderr
    # another namespace ignores nothing here
    r = run(*GAP, "--ignore-ns", "%s.elsewhere" % dbname, *app("lazy"), uri=guide)
    assert r.returncode == 1, r.stderr


# --- what COMMAND gets -------------------------------------------------------------------------

def test_connection_string_keeps_database_and_options(guide, dbname, jongodb, tmp_path):
    out = tmp_path / "env.json"
    r = run(*app("env"), uri=guide, env={"CI_OUT": out})
    assert r.returncode == 0, r.stderr
    got = json.loads(out.read_text())
    first = summary(r)[0]
    assert "forwarding to %s (from MONGODB_URI)" % jongodb in first, first
    port = first.split("proxy on 127.0.0.1:")[1].split(",")[0]
    want = ("mongodb://127.0.0.1:%s/%s?retryWrites=false&appName=guide&directConnection=true"
            % (port, dbname))
    assert got["MONGODB_URI"] == want, got
    assert got["MONGOTAP_URI"] == want, got
    assert got["MONGOTAP_ADMIN_URL"].startswith("http://127.0.0.1:"), got
    assert got["MONGOTAP_ADMIN_URL"] != "http://127.0.0.1:%s" % port


def test_env_names_the_variable_and_upstream_defaults(jongodb, dbname, tmp_path):
    out = tmp_path / "env.json"
    old = "mongodb://%s/%s?w=majority&directConnection=false" % (jongodb, dbname)
    r = run("--env", "DB_URL", *app("env"), env={"CI_OUT": out, "DB_URL": old})
    assert r.returncode == 0, r.stderr
    got = json.loads(out.read_text())
    assert got["DB_URL"].endswith("/%s?w=majority&directConnection=true" % dbname), got
    assert got["MONGODB_URI"] is None, "only the named variable is set"
    assert "(from DB_URL)" in summary(r)[0], summary(r)[0]
    # neither --upstream nor a usable variable: the default, and the summary says why
    r = run(*app("env"), env={"CI_OUT": out})
    assert r.returncode == 0, r.stderr
    assert "forwarding to 127.0.0.1:27017 (the default: MONGODB_URI is unset)" in summary(r)[0]
    r = run("--upstream", jongodb, *app("env"), uri="mongodb+srv://cluster0.example.net/x",
            env={"CI_OUT": out})
    assert "(from --upstream)" in summary(r)[0], summary(r)[0]
    assert json.loads(out.read_text())["MONGODB_URI"].endswith("/x?directConnection=true")


def test_github_step_summary_gets_the_markdown(guide, tmp_path):
    step = tmp_path / "step_summary.md"
    step.write_text("earlier step\n")
    report = tmp_path / "report.json"
    r = run(*GAP, "--report", report, *app("lazy"), uri=guide,
            env={"GITHUB_STEP_SUMMARY": step})
    assert r.returncode == 1, r.stderr
    text = step.read_text()
    assert text.startswith("earlier step\n"), "appended, not overwritten"
    assert "## mongotap run" in text and "**FAIL: 1 new high-confidence" in text, text[:500]
    assert "|" in text and "channel" in text, text[:3000]
    rep = json.loads(report.read_text())
    assert rep["findings"] and rep["findings"][0]["children"]["collection"] == "channel"


@pytest.mark.parametrize("args, names", [
    (["--fail-on", "loops", "--", "/bin/true"], "--fail-on"),
    (["--listen", "--admin", "x", "--", "/bin/true"], "--listen"),
    (["--bogus", "--", "/bin/true"], "--bogus"),
    (["--window-gap-ms", "0", "--", "/bin/true"], "--window-gap-ms"),
    (["--upstream", "nonsense", "--", "/bin/true"], "--upstream"),
    ([], "COMMAND"),
])
def test_bad_usage_is_one_line_exit_2(args, names):
    r = run(*args)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and names in lines[0], r.stderr


# --- signals and processes ---------------------------------------------------------------------

def alive(pid):
    """True while pid exists and is not a zombie waiting to be reaped by whoever adopted it."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def group_members(pgid):
    """pids of the live processes in process group pgid, from /proc."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(name))
    return pids


def children_of(pid):
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open("/proc/%s/stat" % name) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(name))
    return out


def start_waiting(command, uri, env=None):
    full = env_with(MONGODB_URI=uri, **(env or {}))
    proc = subprocess.Popen([helpers.mongotap_bin(), "run"] + GAP + ["--"] + command,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=full, cwd=helpers.ROOT)
    out = helpers._OutputCollector(proc.stdout, "run-out")
    err = helpers._OutputCollector(proc.stderr, "run-err")
    m = out.wait_for(r"^ready (\d+)(?: (\d+))?$", 60)
    if not m:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        raise AssertionError("COMMAND never got ready: %s\n%s" % (out.text(), err.text()))
    proc.err = err
    return proc, out, [int(p) for p in m.groups() if p]


def finish(proc, timeout=30):
    """mongotap run's stderr once it has exited."""
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("mongotap run did not finish within %ss" % timeout)
    proc.err.join()
    text = proc.err.text()
    no_sanitizer_report(text)
    return text


@pytest.mark.parametrize("grandchild", ["plain", "stubborn"])
def test_sigint_reaches_the_command_and_leaves_no_process(guide, grandchild):
    proc, out, (child, gchild) = start_waiting([sys.executable, APP, "wait"], guide,
                                               env={"CI_GRANDCHILD": grandchild})
    assert children_of(proc.pid) == [child], "COMMAND is mongotap's only child"
    assert os.getpgid(child) == child and os.getpgid(gchild) == child, \
        "COMMAND leads a process group of its own, with what it starts"
    proc.send_signal(signal.SIGINT)
    err = finish(proc)
    assert out.wait_for(r"^got SIGINT$", 5), "the child never saw SIGINT: %s" % out.text()
    assert proc.returncode == 128 + signal.SIGINT, err
    assert "mongotap run: Interrupt: passing it on to COMMAND" in err, err
    assert "killed by signal 2" in err, err
    if grandchild == "stubborn":
        assert "still running: sending them SIGTERM" in err, err
    for pid in (child, gchild):
        assert not alive(pid), "pid %d outlived mongotap run" % pid
    assert group_members(child) == [], "processes left in COMMAND's group"
    assert not alive(proc.pid)


def test_sigterm_reaches_a_mongoose_script(books):
    proc, out, (child,) = start_waiting(["node", MONGOOSE, "wait"], books)
    proc.send_signal(signal.SIGTERM)
    err = finish(proc)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Terminated: passing it on to COMMAND" in err, err
    assert not alive(child)
    assert group_members(child) == []


# --- Node.js: mongoose --------------------------------------------------------------------------

def test_mongoose_populate_per_document_fails_on_the_query_passes(books, dbname):
    r = run(*GAP, "--", "node", MONGOOSE, "perdoc", uri=books)
    assert r.returncode == 1, r.stderr
    new = [line for line in summary(r) if " NEW n_plus_one high: " in line]
    assert len(new) == 1 and "%s.authors find" % dbname in new[0], r.stderr
    assert "field authorId" in new[0], new[0]
    assert any("populate(" in line for line in summary(r) if "fix: " in line), r.stderr
    r = run(*GAP, "--", "node", MONGOOSE, "query", uri=books)
    assert r.returncode == 0, r.stderr
    assert "findings: none" in r.stderr

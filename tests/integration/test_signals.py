"""Signals a running proxy answers: SIGHUP reopens --findings-log (log rotation), SIGUSR1 writes
--report while it keeps running, and a second SIGINT during the shutdown drain still writes
--report before exiting."""

import json
import os
import signal
import time

import helpers
import lazy_scenario
from faults.stalled import StalledUpstream

GAP = "300"


def n_plus_one(findings):
    # the scenario's seeding (one save per channel) is a write loop as well
    return [f for f in findings if f["type"] == "n_plus_one"]


def findings_in(path):
    """The N+1 findings in a findings log."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return n_plus_one(json.loads(line) for line in f.read().splitlines())


def wait_for(fn, what, timeout=15):
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got:
            return got
        assert time.monotonic() < deadline, "no %s within %ss" % (what, timeout)
        time.sleep(0.05)


def test_sighup_reopens_the_findings_log(mongotap, dbname, tmp_path):
    log = tmp_path / "findings.jsonl"
    rotated = tmp_path / "findings.jsonl.1"
    tap = mongotap("--window-gap-ms", GAP, "--findings-log", log)
    lazy_scenario.run(tap.uri(dbname + "_a"))
    first = wait_for(lambda: findings_in(log), "finding in the log")
    assert len(first) == 1

    os.rename(log, rotated)  # what logrotate does, then it signals
    mark = len(tap.log_lines())
    tap.proc.send_signal(signal.SIGHUP)
    assert tap.wait_for_log(r"findings log reopened: %s$" % log, 5, start=mark), tap.logs()
    assert log.exists(), "reopened under its name"
    assert tap.running(), "SIGHUP does not stop the proxy"

    lazy_scenario.run(tap.uri(dbname + "_b"))
    second = wait_for(lambda: findings_in(log), "finding in the new log")
    assert len(second) == 1 and second[0]["id"] != first[0]["id"], second
    assert second[0]["parent"]["db"] == dbname + "_b"
    with open(rotated) as f:
        rotated_ids = {json.loads(line)["id"] for line in f.read().splitlines()}
    with open(log) as f:
        new_ids = {json.loads(line)["id"] for line in f.read().splitlines()}
    assert first[0]["id"] in rotated_ids and second[0]["id"] in new_ids
    assert not rotated_ids & new_ids, "each finding went to one file"
    assert second[0]["id"] not in rotated_ids, "the rotated file got nothing more"


def test_sigusr1_writes_the_report_while_running(mongotap, dbname, tmp_path):
    report = tmp_path / "report.json"
    tap = mongotap("--window-gap-ms", GAP, "--report", report)
    lazy_scenario.run(tap.uri(dbname))
    finding = lazy_scenario.wait_for_finding(tap)
    assert not report.exists()

    mark = len(tap.log_lines())
    tap.proc.send_signal(signal.SIGUSR1)
    assert tap.wait_for_log(r"report written to %s$" % report, 5, start=mark), tap.logs()
    rep = json.loads(report.read_text())
    assert finding["id"] in [f["id"] for f in rep["findings"]], rep["findings"]
    assert tap.running() and tap.get("/healthz")[0] == 200, "the proxy goes on"

    # and again later, with what came since
    lazy_scenario.run(tap.uri(dbname + "_again"))
    wait_for(lambda: len(n_plus_one(tap.get_json("/api/findings")["findings"])) == 2,
             "second finding")
    mark = len(tap.log_lines())
    tap.proc.send_signal(signal.SIGUSR1)
    assert tap.wait_for_log(r"report written to", 5, start=mark), tap.logs()
    assert len(n_plus_one(json.loads(report.read_text())["findings"])) == 2
    assert tap.stop() == 0


def test_second_sigint_still_writes_the_report(mongotap, tmp_path):
    report = tmp_path / "report.json"
    with StalledUpstream() as stalled:
        tap = mongotap("--report", report, upstream=stalled.address)
        msg = helpers.op_msg({"find": "stuck", "filter": {}, "$db": "sig"})
        with helpers.raw_connect(tap.host, tap.port) as s:
            s.sendall(msg)
            assert stalled.wait_received(len(msg), 5)
            mark = len(tap.log_lines())
            tap.proc.send_signal(signal.SIGINT)
            # the first one drains: the reply never comes, so it would wait its 5 s
            assert tap.wait_for_log(r"no new connections; finishing in-flight", 5, start=mark)
            assert tap.running()
            start = time.monotonic()
            tap.proc.send_signal(signal.SIGINT)
            rc = tap.proc.wait(10)
            took = time.monotonic() - start
    assert rc == 0, tap.logs()
    assert took < 4.0, "the second SIGINT waited for the drain (%.1fs)" % took
    assert tap.wait_for_log(r"second Interrupt: stopping now", 1), tap.logs()
    assert tap.wait_for_log(r"report written to", 1), tap.logs()
    rep = json.loads(report.read_text())
    assert rep["totals"]["commands"] == 1, rep.get("totals")
    assert not os.path.exists(str(report) + ".tmp")

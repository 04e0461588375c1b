"""mongotap's /metrics as a real Prometheus server sees it: scraped every second on loopback, the
command counters read back through Prometheus's query API match the workload that was run, no
counter goes backwards across POST /api/reset (which resets the JSON views only), and the
exposition passes `promtool check metrics`."""

import json
import shutil
import subprocess
import time
import urllib.parse

import pymongo
import pytest

import helpers

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
pytestmark = pytest.mark.skipif(not shutil.which(PROMETHEUS) or not shutil.which(PROMTOOL),
                                reason="prometheus/promtool not installed (scripts/setup.sh)")

N_FINDS = 37
N_INSERTS = 3
N_AGGREGATES = 4


class Prometheus:
    def __init__(self, tmp_path, target):
        self.port = helpers.free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n"
            "  scrape_interval: 1s\n"
            "  scrape_timeout: 900ms\n"
            "  evaluation_interval: 1s\n"
            "scrape_configs:\n"
            "  - job_name: mongotap\n"
            "    static_configs:\n"
            "      - targets: ['%s']\n" % target)
        self.log = open(tmp_path / "prometheus.log", "w+")
        self.proc = subprocess.Popen(
            [PROMETHEUS, "--config.file=%s" % config, "--storage.tsdb.path=%s" % (tmp_path / "tsdb"),
             "--web.listen-address=127.0.0.1:%d" % self.port, "--storage.tsdb.retention.time=1h"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        self._wait_ready(60)

    def logs(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("prometheus exited %s:\n%s" % (self.proc.returncode, self.logs()))
            try:
                status, _, _ = helpers.http_get(self.url + "/-/ready", timeout=2)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError("prometheus not ready within %ss:\n%s" % (timeout, self.logs()))

    def query(self, promql):
        """The instant vector for promql as [(labels, float)]."""
        status, _, body = helpers.http_get(
            self.url + "/api/v1/query?" + urllib.parse.urlencode({"query": promql}), timeout=5)
        assert status == 200, body
        answer = json.loads(body)
        assert answer["status"] == "success", answer
        return [(r["metric"], float(r["value"][1])) for r in answer["data"]["result"]]

    def wait_value(self, promql, expected, timeout=30):
        """Polls until promql yields exactly one sample equal to expected (scrapes are 1s apart)."""
        deadline = time.monotonic() + timeout
        got = None
        while time.monotonic() < deadline:
            got = self.query(promql)
            if len(got) == 1 and got[0][1] == expected:
                return got
            time.sleep(0.25)
        raise AssertionError("%s: wanted %s, last answer %r; targets: %s"
                             % (promql, expected, got, self.targets()))

    def targets(self):
        _, _, body = helpers.http_get(self.url + "/api/v1/targets", timeout=5)
        return body.decode()[:2000]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


@pytest.fixture
def prometheus(tmp_path):
    started = []

    def start(target):
        p = Prometheus(tmp_path, target)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


def workload(uri, dbname, coll, insert=True):
    client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=10000)
    try:
        c = client[dbname][coll]
        for i in range(N_INSERTS if insert else 0):
            c.insert_one({"_id": i, "genre": "news" if i % 2 else "drama"})
        for i in range(N_FINDS):
            assert c.find_one({"_id": i % N_INSERTS}) is not None
        for _ in range(N_AGGREGATES):
            list(c.aggregate([{"$match": {"genre": "news"}}]))
    finally:
        client.close()


def test_prometheus_scrapes_command_counters(mongotap, prometheus, dbname):
    tap = mongotap()
    prom = prometheus("%s:%d" % tap.admin)
    prom.wait_value('up{job="mongotap"}', 1.0)

    coll = "promcheck"
    workload(tap.uri(dbname), dbname, coll)

    def total(command):
        return 'sum(mongotap_commands_total{command="%s",collection="%s"})' % (command, coll)

    prom.wait_value(total("find"), float(N_FINDS))
    prom.wait_value(total("insert"), float(N_INSERTS))
    prom.wait_value(total("aggregate"), float(N_AGGREGATES))
    # One series per (command, collection), with the scrape job's labels added by Prometheus.
    series = prom.query('mongotap_commands_total{collection="%s"}' % coll)
    assert {labels["command"] for labels, _ in series} >= {"find", "insert", "aggregate"}, series
    assert all(labels.get("job") == "mongotap" for labels, _ in series)


def test_counters_never_decrease_across_reset(mongotap, prometheus, dbname):
    tap = mongotap()
    prom = prometheus("%s:%d" % tap.admin)
    prom.wait_value('up{job="mongotap"}', 1.0)
    coll = "resetcheck"
    finds = 'sum(mongotap_commands_total{command="find",db="%s",collection="%s"})' % (dbname, coll)
    workload(tap.uri(dbname), dbname, coll)
    prom.wait_value(finds, float(N_FINDS))

    status, _, body = tap.post("/api/reset")
    assert status == 200, body
    api = tap.get_json("/api/stats")
    assert api["commands"] == 0 and api["shapes"] == [], api
    # a scrape after the reset: its uptime is past the reset's
    _, _, text = tap.get("/metrics")
    at_reset = float(next(line.split()[1] for line in text.decode().splitlines()
                          if line.startswith("mongotap_uptime_seconds ")))
    helpers.poll("a scrape after the reset", lambda: any(
        v > at_reset for _, v in prom.query('mongotap_uptime_seconds{job="mongotap"}')), timeout=30)
    prom.wait_value(finds, float(N_FINDS))  # not 0: the counter kept its value

    workload(tap.uri(dbname), dbname, coll, insert=False)
    prom.wait_value(finds, 2.0 * N_FINDS)
    assert tap.get_json("/api/stats")["commands"] >= N_FINDS + N_AGGREGATES
    # every counter family Prometheus saw (resets() drops the name: one query per family)
    names = {m["__name__"] for m, _ in prom.query('{__name__=~"mongotap_.+_total",job="mongotap"}')}
    names |= {"mongotap_command_duration_seconds_count", "mongotap_command_duration_seconds_bucket"}
    assert {"mongotap_commands_total", "mongotap_windows_closed_total"} <= names, names
    for name in sorted(names):
        resets = prom.query('resets(%s{job="mongotap"}[10m])' % name)
        assert resets, name
        assert all(v == 0 for _, v in resets), (name, [(m, v) for m, v in resets if v])


def test_metrics_pass_promtool(mongotap, dbname):
    tap = mongotap()
    workload(tap.uri(dbname), dbname, "lint")
    status, headers, body = tap.get("/metrics")
    assert status == 200
    ctype = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
    assert ctype.startswith("text/plain"), ctype
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True, timeout=30)
    assert r.returncode == 0 and r.stdout.strip() == b"" and r.stderr.strip() == b"", (
        "promtool check metrics: exit %d\n%s%s" % (r.returncode, r.stdout.decode(), r.stderr.decode()))
    text = body.decode()
    assert ('mongotap_commands_total{command="find",db="%s",collection="lint"} %d' % (dbname, N_FINDS)
            in text), text[:3000]

"""The web console (GET /) in headless Chromium driven by playwright-core (web/driver.mjs): it loads
without console errors, follows a live pymongo workload, shows the N+1 finding of the lazy
mongoengine scenario, sorts shapes, lists connections, works with an admin token, reconnects when
/events drops, and never turns data into markup. A screenshot goes to artifacts/."""

import json
import os
import shutil
import subprocess
import threading

import pymongo
import pytest

import helpers
import lazy_scenario

NODE = shutil.which("node")
CHROMIUM = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
DRIVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "web", "driver.mjs")
ARTIFACTS = os.path.join(helpers.ROOT, "artifacts")
pytestmark = pytest.mark.skipif(
    NODE is None or not os.access(CHROMIUM, os.X_OK)
    or not os.path.isdir(os.path.join(helpers.ROOT, "node_modules", "playwright-core")),
    reason="node, chromium or playwright-core missing (scripts/setup.sh)")


class Browser:
    """A page in headless Chromium, one command at a time over the driver's stdin/stdout."""

    def __init__(self):
        self.proc = subprocess.Popen([NODE, DRIVER], cwd=helpers.ROOT, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=dict(os.environ, CHROMIUM_BIN=CHROMIUM))
        self._lock = threading.Lock()

    def call(self, cmd, **args):
        args["cmd"] = cmd
        with self._lock:
            self.proc.stdin.write(json.dumps(args) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        if not line:
            raise AssertionError("browser driver died: %s" % self.proc.stderr.read()[-3000:])
        answer = json.loads(line)
        if not answer["ok"]:
            raise AssertionError("%s failed: %s" % (cmd, answer["error"]))
        return answer["value"]

    def open(self, url, width=1400, height=1000):
        return self.call("open", url=url, width=width, height=height)

    def eval(self, expr, arg=None):
        return self.call("eval", expr=expr, arg=arg)

    def wait(self, expr, arg=None, timeout=15, what=""):
        try:
            return self.call("wait", expr=expr, arg=arg, timeout=int(timeout * 1000))
        except AssertionError as e:
            raise AssertionError("page never showed %s: %s\nstatus: %r" % (
                what or expr, e, self.eval('document.getElementById("status-text").textContent')))

    def text(self, selector):
        return self.eval("(document.querySelector(arg) || {}).textContent", selector)

    def click(self, selector):
        self.call("click", selector=selector)

    def problems(self):
        return self.call("problems")

    def screenshot(self, name):
        os.makedirs(ARTIFACTS, exist_ok=True)
        return self.call("screenshot", path=os.path.join(ARTIFACTS, name))

    def close(self):
        if self.proc.poll() is None:
            try:
                self.call("close")
            finally:
                self.proc.stdin.close()
                try:
                    self.proc.wait(20)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(10)


@pytest.fixture
def browser():
    opened = []

    def start():
        b = Browser()
        opened.append(b)
        return b

    yield start
    for b in opened:
        b.close()


class Workload(threading.Thread):
    """find_one in a loop through mongotap until stopped."""

    def __init__(self, uri, dbname):
        super().__init__(daemon=True)
        self.client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=10000)
        self.coll = self.client[dbname]["ticks"]
        self.coll.insert_one({"_id": 0})
        self.halt = threading.Event()
        self.ops = 0

    def run(self):
        while not self.halt.is_set():
            self.coll.find_one({"_id": 0})
            self.ops += 1

    def stop(self):
        self.halt.set()
        self.join(10)
        self.client.close()


LIVE = 'document.getElementById("status-text").textContent === "live"'


def shape_column(b, header):
    """Numbers of one column of the shapes table, top to bottom."""
    return b.eval("""(() => {
        const ths = Array.from(document.querySelectorAll('#shapes thead th'));
        const i = ths.findIndex(th => th.textContent.trim() === arg);
        return Array.from(document.querySelectorAll('#shapes tbody tr')).map(
            tr => parseFloat(tr.children[i].textContent.replace(/,/g, '')));
    })()""", header)


def test_live_page_workload_and_n1_finding(mongotap, dbname, browser):
    tap = mongotap()
    b = browser()
    b.open(tap.admin_url + "/")
    b.wait(LIVE, what="the live status")
    assert b.eval("document.title") == "mongotap"
    idle_ops = b.text("#ops")

    work = Workload(tap.uri(dbname, appname="web-check"), dbname)
    work.start()
    try:
        ops = b.wait("(() => { const v = parseFloat(document.getElementById('ops').textContent);"
                     " return v > 0 && document.getElementById('ops').textContent !== arg && v; })()",
                     idle_ops, what="ops/s rising with the workload")
        assert ops > 0 and work.ops > 0
        b.wait("document.querySelectorAll('#chart polyline').length >= 1", what="the chart's ops line")
        row = b.wait("""(() => {
            const r = Array.from(document.querySelectorAll('#connections tbody tr'))
                .find(tr => tr.textContent.includes('web-check'));
            return r && Array.from(r.children).map(td => td.textContent); })()""",
                     what="the workload's connection row")
        assert "web-check" in row and any("PyMongo" in cell for cell in row), row
    finally:
        work.stop()
    b.wait("parseInt(document.getElementById('commands').textContent.replace(/,/g, '')) >= arg",
           work.ops, what="every command of the workload counted")

    lazy_scenario.run(tap.uri(dbname))
    finding = lazy_scenario.wait_for_finding(tap)
    card = b.wait("""(() => { const f = document.querySelector('.finding[data-id="' + arg + '"]');
                     return f && f.textContent; })()""", finding["id"], what="the N+1 finding card")
    assert "show" in card and "channel" in card and '{"_id": "?"}' in card, card
    assert finding["confidence"] in card.lower(), card
    assert (finding["field"] or "not found") in card, card
    assert finding["suggestion"] in card, card
    # Newest first: the first card is the newest finding.
    newest = max(tap.get_json("/api/findings")["findings"], key=lambda f: (f["detected_at"], f["id"]))
    assert b.eval("document.querySelector('.finding').dataset.id") == newest["id"]
    assert int(b.text("#nfindings")) >= 1

    b.wait("document.querySelectorAll('#shapes tbody tr[data-shape]').length >= 3", what="shape rows")
    for header in ("Count", "p99", "Total ms"):
        b.click('#shapes th:text-is("%s")' % header)
        values = shape_column(b, header)
        assert values == sorted(values, reverse=True), (header, values)
        b.click('#shapes th:text-is("%s")' % header)
        values = shape_column(b, header)
        assert values == sorted(values), ("%s ascending" % header, values)
    b.click('#shapes th:text-is("Total ms")')

    report = b.eval("document.getElementById('report-link').getAttribute('href')")
    status, _, body = tap.get(report)
    assert status == 200 and b"<html" in body.lower()

    # Everything on screen at once for the picture: the pattern, every shape, no stale rows.
    shapes = len(tap.get_json("/api/stats")["shapes"])
    b.wait("document.querySelectorAll('#patterns .pattern').length >= 1", what="the pattern")
    b.wait("document.querySelectorAll('#shapes tbody tr').length === arg", shapes, what="every shape")
    b.wait("document.querySelector('#connections tbody').textContent.includes('No client')",
           what="no live connection left")
    assert b.eval("document.documentElement.scrollWidth <= window.innerWidth"), "no sideways scrolling"
    b.screenshot("web-console.png")
    assert b.problems() == []


def test_page_with_admin_token(mongotap, browser):
    tap = mongotap("--admin-token", "tok-123")
    status, _, _ = helpers.http_get(tap.admin_url + "/")
    assert status == 200, ("GET / answered %d without a token: the page must load without one, since a "
                           "browser cannot send a Bearer header when it opens a URL; the page then "
                           "sends the token itself on every API call" % status)
    status, _, _ = helpers.http_get(tap.admin_url + "/api/stats")
    assert status == 401, "the data routes still need the token"
    b = browser()
    b.open(tap.admin_url + "/#token=tok-123")
    b.wait(LIVE, what="live with the token from the fragment")
    b.wait("document.getElementById('uptime').textContent !== '\u2013'", what="totals")
    assert b.eval("location.hash") == "", "the token is taken out of the address bar"
    assert b.problems() == []

    without = browser()
    without.open(tap.admin_url + "/")
    without.wait("document.getElementById('token-banner').classList.contains('show')",
                 what="the token prompt")
    assert without.text("#status-text") == "token needed"
    without.call("fill", selector="#token-input", value="tok-123")
    without.call("press", selector="#token-input", key="Enter")
    without.wait(LIVE, what="live after entering the token")
    assert not without.eval("document.getElementById('token-banner').classList.contains('show')")


def test_page_reconnects_when_events_drop(mongotap, browser):
    port = helpers.free_port()
    first = mongotap("--admin", "127.0.0.1:%d" % port)
    b = browser()
    b.open(first.admin_url + "/")
    b.wait(LIVE, what="live")
    assert first.stop() == 0
    b.wait("document.getElementById('status-text').textContent.startsWith('reconnecting')",
           what="reconnecting after the drop")
    second = mongotap("--admin", "127.0.0.1:%d" % port)
    b.wait(LIVE, timeout=30, what="live again on the new mongotap")
    assert second.running()


def test_reset_button_clears_everything(mongotap, dbname, browser):
    tap = mongotap()
    lazy_scenario.run(tap.uri(dbname))
    lazy_scenario.wait_for_finding(tap)
    b = browser()
    b.open(tap.admin_url + "/")
    b.wait("document.querySelectorAll('.finding').length >= 1", what="the finding")
    b.click("#reset")
    assert b.text("#reset") != "Reset", "the first click only arms the button"
    assert tap.get_json("/api/findings")["findings"], "nothing reset yet"
    b.click("#reset")
    b.wait("document.querySelectorAll('.finding').length === 0", what="findings cleared")
    assert tap.get_json("/api/findings")["findings"] == []
    assert tap.get_json("/api/stats")["commands"] < 10
    assert b.problems() == []


def test_data_is_never_markup(mongotap, dbname, browser):
    tap = mongotap()
    evil = '<img src=x onerror="window.__pwned=1">'
    client = pymongo.MongoClient(tap.uri(dbname), appname=evil, serverSelectionTimeoutMS=10000)
    try:
        client[dbname]["markup"].find_one({"<b>field</b>": 1})
        b = browser()
        b.open(tap.admin_url + "/")
        b.wait("document.querySelector('#connections tbody').textContent.includes(arg)", evil,
               what="the app name shown as text")
        b.wait("document.querySelector('#shapes tbody').textContent.includes('<b>field</b>')",
               what="the shape shown as text")
        assert b.eval("document.querySelectorAll('img, #shapes tbody b, #connections tbody b').length") == 0
        assert b.eval("window.__pwned === undefined")
    finally:
        client.close()

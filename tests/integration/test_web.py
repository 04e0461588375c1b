"""The web console (GET /) in headless Chromium driven by playwright-core (web/driver.mjs): it loads
without console errors, follows a live pymongo workload, shows the N+1 finding of the lazy
mongoengine scenario (one card per pattern, with its occurrences), sorts shapes, lists connections
with their window, works with an admin token, reconnects when /events drops, and never turns data
into markup. Its Requests view lists the request windows while a page loads, opens one as a
timeline with the N+1 children folded and the parent marked, filters, pauses and catches up, and
is where reports and findings link to. Screenshots go to artifacts/."""

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
                .find(tr => tr.textContent.includes('web-check') && tr.children[5].textContent !== '\u2013');
            return r && Array.from(r.children).map(td => td.textContent); })()""",
                     what="the workload's connection row with its window")
        assert "web-check" in row and any("PyMongo" in cell for cell in row), row
        assert row[5].startswith("#") and "cmds" in row[5], "the WINDOW column names its window: %r" % row
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
    b.wait("document.querySelectorAll('.finding .occ').length >= 1", what="the pattern cards")
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


def row_ids(b):
    return b.eval("Array.from(document.querySelectorAll('#windows tbody tr[data-window]'))"
                  ".map(tr => Number(tr.dataset.window))")


def api_window_ids(tap):
    return [w["id"] for w in tap.get_json("/api/windows?summary=1&limit=200")["windows"]]


def test_requests_view_opens_the_window_of_an_n1_page(mongotap, seed, dbname, browser):
    tap = mongotap()
    lazy_scenario.seed_guide(seed, dbname)
    b = browser()
    b.open(tap.admin_url + "/#requests")
    b.wait(LIVE, what="the live status")
    b.wait("!document.getElementById('view-requests').hidden && "
           "document.getElementById('view-overview').hidden", what="the Requests view")
    b.wait("document.querySelector('#windows tbody').textContent.includes('No request window')",
           what="no window yet")

    # the page loads while the view is open
    lazy_scenario.list_guide(tap.uri(dbname, appname="guide-page"))
    finding = lazy_scenario.wait_for_finding(tap)
    wid = finding["window"]["id"]
    row = b.wait("""(() => { const r = document.querySelector('#windows tr[data-window="' + arg + '"]');
                     return r && Array.from(r.children).map(td => td.textContent); })()""", wid,
                 what="the page's window as a row")
    assert row[2] == "51" and "1 finding" in row[3] and finding["id"] in row[3], row
    assert "guide-page" in row[5] and "%s.show" % dbname in row[6], row

    b.click('#windows tr[data-window="%d"] td:nth-child(3)' % wid)
    b.wait("location.hash === '#window=' + arg", wid, what="the window's address")
    b.wait("""(() => { const d = document.getElementById('window-detail');
                      return !d.hidden && d.dataset.id === String(arg) &&
                             document.querySelector('#timeline tr.fold'); })()""", wid,
           what="the window's timeline")
    assert b.text("#wd-sub").startswith("51 commands"), b.text("#wd-sub")
    assert finding["id"] in b.text("#wd-findings")
    rows = b.eval("Array.from(document.querySelectorAll('#timeline tbody tr')).map(tr => "
                  "({cls: tr.className, text: tr.textContent, count: tr.dataset.count || null}))")
    assert len(rows) == 2, "the parent, then its 50 children folded in one row: %r" % rows
    assert "parent" in rows[0]["cls"].split() and "parent" in rows[0]["text"], rows[0]
    assert "show" in rows[0]["text"] and "find" in rows[0]["text"], rows[0]
    assert "fold" in rows[1]["cls"].split() and rows[1]["count"] == "50", rows[1]
    assert "\u00d750 find channel {_id: ?}" in rows[1]["text"], rows[1]
    assert "1\u201350" in rows[1]["text"], "the fold names the commands it holds: %r" % rows[1]
    highlighted = b.eval("getComputedStyle(document.querySelector('#timeline tr.fold')).backgroundColor")
    plain = b.eval("getComputedStyle(document.querySelector('#timeline thead tr')).backgroundColor")
    assert highlighted != plain and highlighted not in ("rgba(0, 0, 0, 0)", "transparent"), highlighted

    # unfolded: each of the 50 lookups, then folded again
    b.click("#timeline tr.fold")
    b.wait("document.querySelectorAll('#timeline tr.child').length === 50", what="the 50 lookups")
    assert b.eval("Array.from(document.querySelectorAll('#timeline tr.child'))"
                  ".every(tr => tr.textContent.includes(arg))", finding["id"])
    b.click("#timeline tr.fold")
    b.wait("document.querySelectorAll('#timeline tr.child').length === 0", what="folded again")
    b.screenshot("requests-window.png")
    assert b.problems() == []


def test_requests_view_filters_pauses_and_catches_up(mongotap, seed, dbname, browser):
    tap = mongotap()
    lazy_scenario.seed_guide(seed, dbname)
    lazy_scenario.list_guide(tap.uri(dbname, appname="guide-page"))
    finding = lazy_scenario.wait_for_finding(tap)
    wid = finding["window"]["id"]
    client = pymongo.MongoClient(tap.uri(dbname, appname="billing"), serverSelectionTimeoutMS=10000)
    try:
        client[dbname]["invoices"].find_one({"total": 1})
        helpers.poll("the billing window", lambda: len(api_window_ids(tap)) >= 2)
        billing = api_window_ids(tap)[0]
        b = browser()
        b.open(tap.admin_url + "/#requests")
        b.wait("document.querySelectorAll('#windows tbody tr[data-window]').length === arg",
               len(api_window_ids(tap)), what="every window as a row")

        def only(selector, value, want, what):
            b.call("fill", selector=selector, value=value)
            b.wait("JSON.stringify(Array.from(document.querySelectorAll('#windows tbody tr[data-window]'))"
                   ".map(tr => Number(tr.dataset.window))) === arg", json.dumps(want), what=what)
            b.call("fill", selector=selector, value="")

        only("#f-ns", "%s.channel" % dbname, [wid], "the windows on the channel namespace")
        only("#f-shape", "$gt", [], "no window with a $gt shape")
        only("#f-shape", '{"_id"', [wid], "the window with _id lookups")
        only("#f-app", "billing", [billing], "the billing app's window")
        only("#f-q", finding["id"], [wid], "the window of the finding searched for")
        b.call("fill", selector="#f-q", value="no such thing anywhere")
        b.wait("document.querySelector('#windows tbody').textContent.includes('No request window matches')",
               what="nothing matches")
        b.call("fill", selector="#f-q", value="")
        b.wait("document.querySelectorAll('#windows tbody tr[data-window]').length >= 2",
               what="every window again")

        # pause: new windows wait, the rows stay as they are
        b.click("#pause")
        assert b.text("#pause") == "Resume"
        shown = row_ids(b)
        client[dbname]["invoices"].find_one({"total": 2})
        newest = helpers.poll("a newer window", lambda: [i for i in api_window_ids(tap) if i > shown[0]])
        b.wait("document.getElementById('req-note').textContent.includes('1 new window')",
               what="the paused note counting the new window")
        assert row_ids(b) == shown, "paused: the list did not change"
        b.screenshot("requests-paused.png")
        b.click("#pause")
        b.wait("Number((document.querySelector('#windows tbody tr[data-window]') || {dataset: {}})"
               ".dataset.window) === arg", newest[0], what="the new window after resuming")
        assert b.text("#pause") == "Pause"
        assert row_ids(b)[1:] == shown
        b.screenshot("requests-list.png")
        assert b.problems() == []
    finally:
        client.close()


def test_findings_fold_by_pattern_and_link_to_their_window(mongotap, seed, dbname, browser):
    tap = mongotap()
    lazy_scenario.seed_guide(seed, dbname)
    for _ in range(3):  # three page loads: three findings of one pattern
        lazy_scenario.list_guide(tap.uri(dbname))
    found = helpers.poll("three N+1 findings", lambda: [
        f for f in tap.get_json("/api/findings")["findings"] if f["type"] == "n_plus_one"
        and f["children"]["collection"] == "channel"] if len([
            f for f in tap.get_json("/api/findings")["findings"] if f["type"] == "n_plus_one"]) >= 3
        else None)
    newest = max(found, key=lambda f: f["id"])
    b = browser()
    b.open(tap.admin_url + "/")
    card = b.wait("""(() => { const c = Array.from(document.querySelectorAll('.finding'))
                         .filter(c => c.textContent.includes('channel'));
                     return c.length && {n: c.length, id: c[0].dataset.id, occ: c[0].dataset.occurrences,
                                         text: c[0].textContent}; })()""", what="the N+1 card")
    assert card["n"] == 1, "one card for the pattern, not one per occurrence: %r" % card
    assert card["id"] == newest["id"] and card["occ"] == "3", card
    assert "\u00d73 occurrences" in card["text"], card
    # the card links to its newest occurrence's window
    b.click('.finding[data-id="%s"] .links a[data-window]' % newest["id"])
    b.wait("location.hash === '#window=' + arg", newest["window"]["id"], what="the finding's window")
    b.wait("""document.getElementById('window-detail').dataset.id === String(arg) &&
              document.querySelector('#timeline tr.fold')""", newest["window"]["id"],
           what="the finding's window opened")

    # the report's example window opens the same way
    pattern = next(p for p in tap.get_json("/api/findings")["patterns"]
                   if p["type"] == "n_plus_one" and p["children"]["collection"] == "channel")
    b.open(tap.admin_url + "/api/report?format=html")
    link = 'a.window[href="/#window=%d"]' % pattern["example_window"]
    assert b.eval("!!document.querySelector(arg)", link), "the report links the example window"
    b.click(link)
    b.wait("location.pathname === '/' && location.hash === '#window=' + arg",
           pattern["example_window"], what="the console at the report's window")
    b.wait("""(() => { const d = document.getElementById('window-detail');
                      return !d.hidden && d.dataset.id === String(arg) &&
                             document.querySelectorAll('#timeline tbody tr').length === 2; })()""",
           pattern["example_window"], what="the report's window in the console")
    assert b.problems() == []


def test_with_a_token_the_report_copy_links_back_to_its_windows(mongotap, dbname, browser):
    tap = mongotap("--admin-token", "tok-456")
    lazy_scenario.run(tap.uri(dbname))
    finding = lazy_scenario.wait_for_finding(tap, token="tok-456")
    b = browser()
    b.open(tap.admin_url + "/#token=tok-456")
    b.wait(LIVE, what="live with the token")
    # the report is fetched with the token and opened as a copy in a new tab
    b.call("popup", selector="#report-link")
    b.wait("document.querySelector('a.window')", what="the report copy with its window links")
    href = b.eval("document.querySelector('a.window[href$=\"window=' + arg + '\"]').href",
                  finding["window"]["id"])
    assert href.startswith(tap.admin_url + "/#token="), href
    b.click('a.window[href$="window=%d"]' % finding["window"]["id"])
    b.wait("""(() => { const d = document.getElementById('window-detail');
                      return location.hash === '#window=' + arg && !d.hidden &&
                             document.querySelector('#timeline tr.fold'); })()""",
           finding["window"]["id"], what="the window, the token out of the address bar")
    assert b.problems() == []

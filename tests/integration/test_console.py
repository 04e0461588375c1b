"""`mongotap console` in a real terminal: run under a private tmux server with a fixed size, read
with capture-pane, driven with send-keys: shapes, findings, connections, the request windows (w)
with one opened as its commands (the N+1 children folded, the parent marked), the / filter and
space to pause and resume. Also its plain snapshot when stdout is not a terminal, and its flag
errors."""

import itertools
import os
import shlex
import shutil
import subprocess
import time

import pytest

import pymongo

import helpers
import lazy_scenario

TMUX = shutil.which("tmux")
pytestmark = pytest.mark.skipif(TMUX is None, reason="tmux is not installed (scripts/setup.sh)")

_ids = itertools.count(1)


class Terminal:
    """One command in a tmux pane of its own tmux server (-L), so nothing else is touched."""

    def __init__(self, tmp_path, argv, width=160, height=48, env=None):
        self.sock = "mongotap-test-%d-%d" % (os.getpid(), next(_ids))
        self.rc_file = str(tmp_path / ("rc-%s" % self.sock))
        self.asan_log = str(tmp_path / ("asan-%s" % self.sock))
        envs = {"TERM": "xterm-256color", "ASAN_OPTIONS": "log_path=%s" % self.asan_log}
        envs.update(env or {})
        assign = " ".join("%s=%s" % (k, shlex.quote(v)) for k, v in envs.items())
        # After the command: its exit code to a file, a wait-for signal, and a pause that keeps
        # the server up so that a late waiter still sees the signal.
        script = "env %s %s; echo $? > %s; tmux -L %s wait-for -S exited; sleep 30" % (
            assign, " ".join(shlex.quote(a) for a in argv), shlex.quote(self.rc_file), self.sock)
        self._tmux("new-session", "-d", "-s", "main", "-x", str(width), "-y", str(height), script)

    def _tmux(self, *args, timeout=10):
        return subprocess.run([TMUX, "-L", self.sock] + list(args), check=True, timeout=timeout,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def screen(self):
        return self._tmux("capture-pane", "-p", "-t", "main").stdout

    def wait_screen(self, predicate, what, timeout=15):
        """The screen once predicate(screen) holds; fails after timeout showing the last one."""
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.screen()
            if predicate(text):
                return text
            time.sleep(0.05)
        raise AssertionError("screen never showed %s within %ss; last screen:\n%s" % (what, timeout, text))

    def keys(self, *keys):
        self._tmux("send-keys", "-t", "main", *keys)

    def type(self, text):
        """Types text as it is (no key names)."""
        self._tmux("send-keys", "-t", "main", "-l", text)

    def screen_with_attributes(self):
        """The screen with its SGR escape sequences (colours, bold, reverse)."""
        return self._tmux("capture-pane", "-e", "-p", "-t", "main").stdout

    def resize(self, width, height):
        self._tmux("resize-window", "-t", "main", "-x", str(width), "-y", str(height))

    def quit_and_wait(self, key="q", timeout=10):
        """Sends key and returns the command's exit code once it has exited."""
        waiter = subprocess.Popen([TMUX, "-L", self.sock, "wait-for", "exited"])
        try:
            self.keys(key)
            waiter.wait(timeout)
        finally:
            if waiter.poll() is None:
                waiter.kill()
                waiter.wait()
        with open(self.rc_file) as f:
            return int(f.read().strip())

    def sanitizer_report(self):
        found = [p for p in os.listdir(os.path.dirname(self.asan_log))
                 if p.startswith(os.path.basename(self.asan_log))]
        return "".join(open(os.path.join(os.path.dirname(self.asan_log), p)).read() for p in found)

    def close(self):
        subprocess.run([TMUX, "-L", self.sock, "kill-server"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=10)


@pytest.fixture
def terminal(tmp_path):
    opened = []

    def open_terminal(argv, **kwargs):
        t = Terminal(tmp_path, argv, **kwargs)
        opened.append(t)
        return t

    yield open_terminal
    reports = [t.sanitizer_report() for t in opened]
    for t in opened:
        t.close()
    assert not any(reports), "sanitizer reports from the console:\n" + "\n".join(reports)


def console_argv(*args):
    return [helpers.mongotap_bin(), "console"] + list(args)


def body_lines(screen):
    """The table area: everything under the header, keys, status and column-title rows."""
    return screen.splitlines()[3:]


def has_channel_shape_row(screen):
    return any("find" in line and "channel" in line and '{"_id": "?"}' in line
               for line in body_lines(screen))


def test_console_shows_shapes_and_the_finding_then_quits(mongotap, dbname, terminal):
    tap = mongotap()
    lazy_scenario.run(tap.uri(dbname))
    finding = lazy_scenario.wait_for_finding(tap)
    t = terminal(console_argv("--admin", tap.admin_url, "--interval", "300"), width=200, height=50)

    screen = t.wait_screen(has_channel_shape_row, "the channel {_id} shape row")
    header = screen.splitlines()[0]
    assert "mongotap" in header and "cmds" in header and "ops/s" in header, header
    row = next(line for line in body_lines(screen) if '{"_id": "?"}' in line and "channel" in line)
    assert row.split()[1] == "50", "50 lookups of one shape: %r" % row

    t.keys("f")
    screen = t.wait_screen(lambda s: "FINDINGS (" in s and finding["id"] in s, "the findings view")
    line = next(line for line in screen.splitlines() if finding["id"] in line)
    assert finding["confidence"] in line, line
    assert "show find" in line and "->" in line and "channel find" in line, line
    assert "field=%s" % (finding["field"] or "-") in line, line
    assert "PATTERNS" in screen

    t.keys("c")
    t.wait_screen(lambda s: "CLIENT" in s and "DRIVER" in s, "the connections view")
    t.keys("s")
    t.wait_screen(has_channel_shape_row, "the shapes view again")
    assert t.quit_and_wait("q") == 0


def test_console_sorts_shapes_by_count_and_p99(mongotap, dbname, terminal):
    tap = mongotap()
    lazy_scenario.run(tap.uri(dbname))
    t = terminal(console_argv("--admin", tap.admin_url, "--interval", "300"), width=200, height=50)
    t.wait_screen(has_channel_shape_row, "the shapes table")

    def column(screen, index):
        values = []
        for line in body_lines(screen)[1:]:
            cells = line.split()
            if len(cells) > 6 and cells[0][0].isdigit():
                values.append(float(cells[index].rstrip("kMG")))
        return values

    t.keys("n")
    screen = t.wait_screen(lambda s: "sorted by count" in s, "count sort selected")
    counts = column(screen, 1)
    assert len(counts) >= 3 and counts == sorted(counts, reverse=True), counts
    t.keys("p")
    screen = t.wait_screen(lambda s: "sorted by p99" in s, "p99 sort selected")
    p99s = column(screen, 3)
    assert len(p99s) >= 3 and p99s == sorted(p99s, reverse=True), p99s
    assert t.quit_and_wait("q") == 0


def test_console_unreachable_admin_shows_message_and_keeps_trying(terminal):
    url = "http://127.0.0.1:%d" % helpers.free_port()
    t = terminal(console_argv("--admin", url, "--interval", "200"))
    screen = t.wait_screen(lambda s: "cannot reach mongotap admin" in s, "the unreachable message")
    message = [line for line in screen.splitlines() if "cannot reach" in line]
    assert len(message) == 1 and url in message[0] and "retrying" in message[0], screen
    assert t.quit_and_wait("q") == 0


def test_console_picks_up_an_admin_that_comes_up_later(mongotap, terminal):
    port = helpers.free_port()
    t = terminal(console_argv("--admin", "http://127.0.0.1:%d" % port, "--interval", "200"))
    t.wait_screen(lambda s: "cannot reach mongotap admin" in s, "the unreachable message")
    mongotap("--admin", "127.0.0.1:%d" % port)
    t.wait_screen(lambda s: "cannot reach" not in s and "cmds" in s.splitlines()[0], "live totals")
    assert t.quit_and_wait("q") == 0


def test_console_with_admin_token(mongotap, terminal):
    tap = mongotap("--admin-token", "s3cret")
    without = terminal(console_argv("--admin", tap.admin_url, "--interval", "200"))
    # the message, not "401" alone: the admin port may hold those digits
    screen = without.wait_screen(lambda s: "401 Unauthorized" in s, "the 401 message")
    assert "--token" in screen
    assert without.quit_and_wait("q") == 0

    with_flag = terminal(console_argv("--admin", tap.admin_url, "--token", "s3cret"))
    with_flag.wait_screen(lambda s: "cmds" in s.splitlines()[0] and "401 Unauthorized" not in s,
                        "totals with --token")
    assert with_flag.quit_and_wait("q") == 0

    with_env = terminal(console_argv(), env={"MONGOTAP_ADMIN_URL": tap.admin_url,
                                             "MONGOTAP_TOKEN": "s3cret"})
    with_env.wait_screen(lambda s: "cmds" in s.splitlines()[0] and "401 Unauthorized" not in s,
                       "totals from env")
    assert with_env.quit_and_wait("q") == 0


def test_console_redraws_on_resize(mongotap, dbname, terminal):
    tap = mongotap()
    lazy_scenario.run(tap.uri(dbname))
    t = terminal(console_argv("--admin", tap.admin_url, "--interval", "5000"), width=160, height=40)
    t.wait_screen(lambda s: has_channel_shape_row(s) and "P50 ms" in s, "the wide shapes table")
    # The interval is long: only the resize itself can bring the narrow layout this soon.
    t.resize(90, 20)
    screen = t.wait_screen(lambda s: "P50 ms" not in s and has_channel_shape_row(s), "the narrow table",
                           timeout=4)
    lines = screen.splitlines()
    assert len(lines) <= 20 and all(len(line) <= 90 for line in lines), screen
    t.resize(170, 40)
    t.wait_screen(lambda s: "P50 ms" in s, "the wide table again", timeout=4)
    assert t.quit_and_wait("q") == 0


def test_console_without_a_terminal_prints_a_snapshot(mongotap, dbname):
    tap = mongotap()
    lazy_scenario.run(tap.uri(dbname))
    lazy_scenario.wait_for_finding(tap)
    r = subprocess.run(console_argv("--admin", tap.admin_url), stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert has_channel_shape_row(r.stdout), r.stdout
    assert "FINDINGS (" in r.stdout and "show find" in r.stdout, r.stdout


def test_console_without_a_terminal_and_no_admin_fails():
    url = "http://127.0.0.1:%d" % helpers.free_port()
    r = subprocess.run(console_argv("--admin", url), stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach mongotap admin" in lines[0] and url in lines[0], r.stderr


@pytest.mark.parametrize("args, flag", [
    (["--interval", "5"], "--interval"),
    (["--interval", "abc"], "--interval"),
    (["--admin", "https://127.0.0.1:1"], "--admin"),
    (["--admin"], "--admin"),
    (["--bogus"], "--bogus"),
    (["extra"], "extra"),
])
def test_console_bad_flags_exit_2(args, flag):
    r = subprocess.run(console_argv(*args), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and flag in lines[0], r.stderr


def window_ids_on(screen):
    """The window ids of the windows view's rows, top to bottom."""
    ids = []
    for line in body_lines(screen):
        cells = line.lstrip(">").split()
        if len(cells) > 2 and cells[0].isdigit() and cells[1].startswith("#"):
            ids.append(int(cells[1][1:]))
    return ids


def api_window_ids(tap):
    return [w["id"] for w in tap.get_json("/api/windows?summary=1&limit=200")["windows"]]


def test_console_windows_view_opens_a_window_with_its_children_folded(mongotap, seed, dbname,
                                                                       terminal):
    tap = mongotap()
    lazy_scenario.seed_guide(seed, dbname)
    lazy_scenario.list_guide(tap.uri(dbname, appname="guide-page"))
    finding = lazy_scenario.wait_for_finding(tap)
    wid = finding["window"]["id"]
    t = terminal(console_argv("--admin", tap.admin_url, "--interval", "300"), width=200, height=50)
    t.wait_screen(lambda s: "cmds" in s.splitlines()[0], "live totals")
    t.keys("w")
    screen = t.wait_screen(lambda s: wid in window_ids_on(s), "the windows view")
    row = next(line for line in body_lines(screen) if "#%d " % wid in line)
    assert row.startswith(">"), "the newest row is selected: %r" % row
    assert "51" in row.split() and finding["id"] in row and "guide-page" in row, row

    t.keys("Enter")
    screen = t.wait_screen(lambda s: "WINDOW #%d" % wid in s and "x50 " in s, "the window")
    lines = screen.splitlines()
    assert "51 commands" in next(line for line in lines if "WINDOW #%d" % wid in line)
    assert any(finding["id"] in line and "n_plus_one" in line for line in lines), screen
    parent = [line for line in lines if "PARENT" in line]
    assert len(parent) == 1 and "find %s.show {}" % dbname in parent[0], screen
    fold = [line for line in lines if "x50 find channel {_id: ?}" in line]
    assert len(fold) == 1 and "1-50" in fold[0] and "children" in fold[0], screen
    assert not any("channel {_id: ?}" in line and "x50" not in line for line in lines), \
        "the 50 lookups are one line: %s" % screen
    # the fold is drawn highlighted (its own colour or reverse video)
    colored = next(line for line in t.screen_with_attributes().splitlines() if "x50 find" in line)
    assert "\x1b[" in colored, repr(colored)

    t.keys("Escape")
    t.wait_screen(lambda s: wid in window_ids_on(s), "back to the windows")
    t.type(str(wid))
    t.wait_screen(lambda s: "open window #%d_" % wid in s, "the window number typed")
    t.keys("Enter")
    t.wait_screen(lambda s: "WINDOW #%d" % wid in s and "x50 " in s, "the window opened by number")
    t.type("99999")
    t.keys("Enter")
    t.wait_screen(lambda s: "#99999 is not kept" in s, "an unknown window")
    t.keys("w")
    t.wait_screen(lambda s: wid in window_ids_on(s), "the windows again")
    assert t.quit_and_wait("q") == 0


def test_console_filters_and_pauses(mongotap, seed, dbname, terminal):
    tap = mongotap()
    lazy_scenario.seed_guide(seed, dbname)
    lazy_scenario.list_guide(tap.uri(dbname, appname="guide-page"))
    wid = lazy_scenario.wait_for_finding(tap)["window"]["id"]
    client = pymongo.MongoClient(tap.uri(dbname, appname="billing"), serverSelectionTimeoutMS=10000)
    try:
        client[dbname]["invoices"].find_one({"total": 1})
        helpers.poll("the billing window", lambda: len(api_window_ids(tap)) >= 2)
        billing = api_window_ids(tap)[0]
        t = terminal(console_argv("--admin", tap.admin_url, "--interval", "200"), width=200,
                     height=50)
        t.keys("w")
        t.wait_screen(lambda s: window_ids_on(s) == [billing, wid], "both windows")

        # "/" filters windows (and shapes) by namespace, shape or app
        t.keys("/")
        t.type("invoices")
        t.wait_screen(lambda s: "filter (namespace, shape or app" in s and "invoices_" in s,
                      "the filter being typed")
        t.keys("Enter")
        t.wait_screen(lambda s: window_ids_on(s) == [billing] and 'filter "invoices"' in s,
                      "only the invoices window")
        t.keys("s")
        screen = t.wait_screen(lambda s: "invoices" in s and "P50 ms" in s, "the shapes filtered")
        assert not any("channel" in line for line in body_lines(screen)), screen
        t.keys("w", "/")
        for _ in range(len("invoices")):
            t.keys("BSpace")
        t.type("guide")
        t.keys("Enter")
        t.wait_screen(lambda s: window_ids_on(s) == [wid], "only the guide-page window")
        t.keys("/")
        t.type("nothing-like-it")
        t.keys("Enter")
        t.wait_screen(lambda s: "No request window matches the filter" in s, "no match")
        t.keys("/")
        for _ in range(len("guidenothing-like-it")):
            t.keys("BSpace")
        t.keys("Enter")
        t.wait_screen(lambda s: window_ids_on(s) == [billing, wid], "every window again")

        # space pauses: the list holds while refreshes are skipped, space again catches up
        t.keys("Space")
        t.wait_screen(lambda s: "PAUSED:" in s, "the pause")
        client[dbname]["invoices"].find_one({"total": 2})
        newest = helpers.poll("a newer window", lambda: [i for i in api_window_ids(tap)
                                                         if i > billing])[0]

        def skipped(screen):
            line = next((line for line in screen.splitlines() if "PAUSED:" in line), "")
            return int(line.split("PAUSED:")[1].split()[0]) if line else -1

        now = skipped(t.screen())
        screen = t.wait_screen(lambda s: skipped(s) >= now + 2, "two refreshes skipped")
        assert window_ids_on(screen) == [billing, wid], "paused: %s" % screen
        t.keys("Space")
        t.wait_screen(lambda s: "PAUSED" not in s and window_ids_on(s)[:1] == [newest],
                      "the new window after resuming")
        assert t.quit_and_wait("q") == 0
    finally:
        client.close()

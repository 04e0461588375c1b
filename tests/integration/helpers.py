"""Helpers for the integration tests: locating binaries, running jongodb and mongotap as child
processes, raw wire-protocol messages, and the admin HTTP API. conftest.py turns these into
pytest fixtures; scripts outside pytest (the demo) can use them directly."""

import http.client
import json
import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.request

import bson

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
JONGODB_REL = os.path.join("node_modules", "@jongodb", "memory-server-bin-linux-x64-gnu", "bin",
                           "jongodb")
NODE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node")

READY_RE = re.compile(r"ready listen=(\S+) admin=(\S+)(?: upstream=\S+)?(?: tls_listen=(\S+))?")
# mongotap's upstream monitor opens connections of its own and names itself in their first
# hello; servers written for a test leave those connections out of what they record.
MONITOR_MARK = b"mongotap monitor"
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")

OP_MSG = 2013
OP_QUERY = 2004
OP_REPLY = 1


class SetupError(RuntimeError):
    """A prerequisite (binary, server) is missing or did not start."""


def mongotap_bin():
    """The binary under test: $MONGOTAP_BIN, else build/proxy/mongotap."""
    path = os.environ.get("MONGOTAP_BIN") or os.path.join("build", "proxy", "mongotap")
    if not os.path.isabs(path):
        path = os.path.join(ROOT, path)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise SetupError("mongotap binary not found at %s: build it with scripts/build.sh "
                         "or set MONGOTAP_BIN" % path)
    return path


def jongodb_bin():
    """The test server: $JONGODB_BIN, else node_modules/ from scripts/setup.sh."""
    path = os.environ.get("JONGODB_BIN") or os.path.join(ROOT, JONGODB_REL)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise SetupError("jongodb not found at %s: run scripts/setup.sh (npm ci) or set "
                         "JONGODB_BIN" % path)
    return path


def free_port(host="127.0.0.1"):
    """A port nothing listens on right now (bound then released)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def split_hostport(hp):
    """'127.0.0.1:27018' or '[::1]:27018' -> (host, port)."""
    host, _, port = hp.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


class _OutputCollector:
    """Drains a child's pipe on a thread, keeping every line; callers wait for patterns."""

    def __init__(self, pipe, name):
        self._lines = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, args=(pipe,), name=name, daemon=True)
        self._thread.start()

    def _run(self, pipe):
        for raw in iter(pipe.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._cond:
                self._lines.append(line)
                self._cond.notify_all()
        pipe.close()
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def text(self):
        with self._cond:
            return "\n".join(self._lines)

    def lines(self):
        with self._cond:
            return list(self._lines)

    def count(self):
        with self._cond:
            return len(self._lines)

    def wait_for(self, regex, timeout, start=0):
        """First match of regex in a line at index >= start, waiting up to timeout seconds.
        Returns the match, or None when the pipe closed or time ran out."""
        pattern = re.compile(regex)
        deadline = time.monotonic() + timeout
        with self._cond:
            i = start
            while True:
                while i < len(self._lines):
                    m = pattern.search(self._lines[i])
                    if m:
                        return m
                    i += 1
                left = deadline - time.monotonic()
                if self._closed or left <= 0:
                    return None
                self._cond.wait(left)

    def join(self, timeout=5):
        self._thread.join(timeout)


class Jongodb:
    """A jongodb server on a free (or given) port; ready once it prints JONGODB_URI=."""

    def __init__(self, port=0, startup_timeout=60):
        self.proc = subprocess.Popen([jongodb_bin(), "--port=%d" % port],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, cwd=ROOT)
        self.out = _OutputCollector(self.proc.stdout, "jongodb-out")
        m = self.out.wait_for(r"JONGODB_URI=mongodb://([^/\s]+)", startup_timeout)
        if not m:
            self.kill()
            raise SetupError("jongodb did not print JONGODB_URI= within %ss:\n%s"
                             % (startup_timeout, self.out.text()))
        self.address = m.group(1)
        self.host, self.port = split_hostport(self.address)

    def uri(self, db="test"):
        return "mongodb://%s/%s?directConnection=true" % (self.address, db)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self.out.join()


class Mongotap:
    """A running mongotap. Ready (all sockets bound) once it printed its `ready` line."""

    def __init__(self, args, env=None, startup_timeout=30):
        self.args = [mongotap_bin()] + list(args)
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     env=full_env, cwd=ROOT)
        self.err = _OutputCollector(self.proc.stderr, "mongotap-err")
        self.returncode = None
        m = self.err.wait_for(READY_RE.pattern, startup_timeout)
        if not m:
            rc = self.stop(signal.SIGKILL) if self.proc.poll() is None else self.proc.wait()
            raise SetupError("mongotap %s did not print its ready line within %ss (exit %s); "
                             "stderr:\n%s" % (" ".join(args), startup_timeout, rc, self.logs()))
        self.listen = [split_hostport(hp) for hp in m.group(1).split(",") if hp != "-"]
        self.tls_listen = [split_hostport(hp) for hp in (m.group(3) or "").split(",") if hp]
        self.host, self.port = (self.listen or self.tls_listen)[0]
        admin = m.group(2)
        self.admin = None if admin == "off" else split_hostport(admin)
        self.admin_url = None if admin == "off" else "http://%s" % admin

    @property
    def pid(self):
        return self.proc.pid

    @property
    def address(self):
        return "%s:%d" % (self.host, self.port)

    def uri(self, db="test", **options):
        opts = {"directConnection": "true"}
        opts.update({k: str(v) for k, v in options.items()})
        query = "&".join("%s=%s" % kv for kv in opts.items())
        return "mongodb://127.0.0.1:%d/%s?%s" % (self.port, db, query)

    def logs(self):
        return self.err.text()

    def log_lines(self):
        return self.err.lines()

    def wait_for_log(self, regex, timeout=5, start=0):
        return self.err.wait_for(regex, timeout, start)

    def running(self):
        return self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=15):
        """Sends sig (if still running) and returns the exit code; SIGKILL after timeout."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                self.err.join()
                raise AssertionError("mongotap did not exit within %ss of signal %d; stderr:\n%s"
                                     % (timeout, sig, self.logs()))
        self.err.join()
        self.returncode = self.proc.returncode
        return self.returncode

    def sanitizer_reports(self):
        text = self.logs()
        return [m for m in SANITIZER_MARKERS if m in text]

    def get(self, path, token=None, timeout=10):
        return http_get(self.admin_url + path, token=token, timeout=timeout)

    def get_json(self, path, token=None, timeout=10):
        return admin_json(self.admin_url + path, token=token, timeout=timeout)

    def post(self, path, token=None, timeout=10):
        return http_post(self.admin_url + path, token=token, timeout=timeout)


def small_quarantine_env():
    """Environment for a mongotap whose VmRSS a test measures: a small ASan quarantine, so that
    freed memory shows as freed (no effect on a build without ASan)."""
    asan = os.environ.get("ASAN_OPTIONS", "")
    return {"ASAN_OPTIONS": (asan + ":" if asan else "") + "quarantine_size_mb=1"}


# What a POST to the admin API must carry: a header that no cross-site form can send.
POST_HEADERS = {"X-Mongotap": "1"}


def http_get(url, token=None, timeout=10, method="GET", headers=None, data=None):
    """(status, headers, body bytes) for an HTTP request; HTTP errors are returned, not raised."""
    req = urllib.request.Request(url, method=method, data=data, headers=headers or {})
    if token:
        req.add_header("Authorization", "Bearer %s" % token)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def http_post(url, token=None, timeout=10, headers=POST_HEADERS, data=b""):
    """(status, headers, body bytes) for a POST with the admin API's header (headers={} leaves
    it out)."""
    return http_get(url, token=token, timeout=timeout, method="POST", headers=headers, data=data)


def admin_request(tap, method, path, headers=None, body=None, timeout=10):
    """(status, headers, body) of one request to tap's admin endpoint over a fresh connection,
    headers as given (a Host header among them replaces the usual one); for /events only the
    first event is read (the stream never ends)."""
    conn = http.client.HTTPConnection(tap.admin[0], tap.admin[1], timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        if r.status == 200 and r.getheader("Content-Type", "").startswith("text/event-stream"):
            data = b""
            while b"\n\n" not in data:
                line = r.readline()
                if not line:
                    break
                data += line
            return r.status, dict(r.getheaders()), data
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def admin_json(url, token=None, timeout=10):
    """GET url and parse the JSON answer; fails unless the status is 200."""
    status, _, body = http_get(url, token=token, timeout=timeout)
    if status != 200:
        raise AssertionError("GET %s -> %d: %r" % (url, status, body[:500]))
    return json.loads(body)


def poll(what, fn, timeout=10, interval=0.05):
    """fn() until it returns something true; fails naming `what` after timeout seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError("timed out after %ss waiting for %s (last: %r)" % (timeout, what, last))


def settled_findings(tap, timeout=10):
    """/api/findings once every request window of tap has closed, and so been analysed (the
    windows.open gauge of /api/stats is 0). Call it after the workload's last reply: a window
    closes after the connection's idle gap, when the connection closes, or at window-max."""
    poll("every request window to close",
         lambda: tap.get_json("/api/stats?limit=1")["windows"]["open"] == 0, timeout=timeout)
    return tap.get_json("/api/findings")


def run_node(script, *args, timeout=60):
    """Runs tests/integration/node/<script> with node and returns what it printed on stdout,
    parsed as one JSON document; fails with its stderr when it exits non-zero."""
    r = subprocess.run(["node", script] + [str(a) for a in args], cwd=NODE_DIR,
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, "node %s failed (%d):\n%s" % (script, r.returncode, r.stderr)
    return json.loads(r.stdout)


# --- raw wire protocol -------------------------------------------------------------------------

def op_msg(doc, request_id=1, flags=0):
    """An OP_MSG with a single kind-0 section holding doc."""
    body = struct.pack("<I", flags) + b"\x00" + bson.BSON.encode(doc)
    return struct.pack("<iiii", 16 + len(body), request_id, 0, OP_MSG) + body


def header(length, request_id=1, opcode=OP_MSG):
    """A bare 16-byte message header claiming `length` bytes."""
    return struct.pack("<iiii", length, request_id, 0, opcode)


def read_message(sock):
    """One whole reply (header, body) from sock; raises EOFError when the peer closed."""
    head = _recv_exact(sock, 16)
    length, request_id, response_to, opcode = struct.unpack("<iiii", head)
    body = _recv_exact(sock, length - 16)
    return (length, request_id, response_to, opcode), body


def op_msg_reply_doc(body):
    """The kind-0 document of an OP_MSG reply body."""
    assert body[4] == 0, "first section is not kind 0"
    return bson.BSON(body[5:]).decode()


def _recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("peer closed after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return buf


def raw_connect(host, port, timeout=5):
    s = socket.create_connection((host, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def raw_ping(sock, request_id=7):
    """Sends an OP_MSG ping and returns the reply document (checking responseTo)."""
    sock.sendall(op_msg({"ping": 1, "$db": "admin"}, request_id=request_id))
    (_, _, response_to, opcode), body = read_message(sock)
    assert opcode == OP_MSG, "reply opcode %d" % opcode
    assert response_to == request_id, "responseTo %d for request %d" % (response_to, request_id)
    return op_msg_reply_doc(body)


def wait_closed(sock, timeout):
    """Seconds until the peer closed sock (EOF or reset); raises socket.timeout after timeout.
    Any data received before the close is returned as well: (seconds, data)."""
    sock.settimeout(timeout)
    start = time.monotonic()
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - start, data
        if not chunk:
            return time.monotonic() - start, data
        data += chunk
        left = timeout - (time.monotonic() - start)
        if left <= 0:
            raise socket.timeout("peer still open after %ss" % timeout)
        sock.settimeout(left)


# --- TLS, DNS ----------------------------------------------------------------------------------

FIXTURES_DIR = os.path.join(ROOT, "tests", "fixtures")


def make_certs(directory):
    """A test CA and certificates (tests/fixtures/make_certs.sh, the openssl CLI) in directory."""
    res = subprocess.run([os.path.join(FIXTURES_DIR, "make_certs.sh"), directory],
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise SetupError("make_certs.sh failed: %s%s" % (res.stdout, res.stderr))
    return directory


class Stunnel:
    """Debian's stunnel4 in the foreground, one service. As a server (the default) it takes TLS
    with cert/key on its port and forwards plaintext to `connect`; with client=True it takes
    plaintext and speaks TLS to `connect`, verifying the certificate against ca for check_host.
    verify_clients=CA makes a server require a client certificate signed by that CA. Ready once it
    logged "Configuration successful" (its port is bound by then; a probe connection would show
    up on the far side as a connection of its own)."""

    def __init__(self, connect, workdir, cert=None, key=None, client=False, ca=None,
                 check_host=None, verify_clients=None, startup_timeout=15):
        self.port = free_port()
        self.conf = os.path.join(workdir, "stunnel-%d.conf" % self.port)
        lines = ["foreground = yes", "pid =", "debug = 5", "[svc]",
                 "accept = 127.0.0.1:%d" % self.port, "connect = %s" % connect]
        if client:
            lines += ["client = yes", "CAfile = %s" % ca, "verifyChain = yes"]
            if check_host:
                lines += ["checkHost = %s" % check_host, "sni = %s" % check_host]
        else:
            lines += ["cert = %s" % cert, "key = %s" % key]
            if verify_clients:
                lines += ["CAfile = %s" % verify_clients, "verifyChain = yes", "requireCert = yes"]
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.proc = subprocess.Popen(["stunnel4", self.conf], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.out = _OutputCollector(self.proc.stdout, "stunnel-out")
        if not self.out.wait_for(r"Configuration successful", startup_timeout):
            self.kill()
            raise SetupError("stunnel did not start:\n%s" % self.out.text())
    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self.out.join()


class Dnsmasq:
    """dnsmasq on a free loopback port, answering only from its command line (records given as
    dnsmasq options, e.g. --srv-host=..., --txt-record=..., --host-record=...). Ready once it
    logged that it started."""

    def __init__(self, records, startup_timeout=15):
        self.port = free_port()
        args = ["dnsmasq", "--no-daemon", "--port=%d" % self.port, "--listen-address=127.0.0.1",
                "--bind-interfaces", "--no-resolv", "--no-hosts", "--log-facility=-",
                "--log-queries"] + list(records)
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        self.out = _OutputCollector(self.proc.stdout, "dnsmasq-out")
        if not self.out.wait_for(r"started, version", startup_timeout):
            self.kill()
            raise SetupError("dnsmasq did not start:\n%s" % self.out.text())

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def kill(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.out.join()

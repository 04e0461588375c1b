"""A stalled upstream: accepts every connection, reads and keeps what arrives, and never answers.
It is what a wedged mongod looks like from a proxy: TCP is fine, no reply ever comes. Tests wait on
`wait_received` (the bytes got there) rather than on time. Given `answer` bytes, it instead sends
them once after the first bytes arrive on a connection (then hangs up if `close_after`): a server
that answers garbage, or dies in the middle of a reply."""

import selectors
import socket
import threading
import time

from helpers import MONITOR_MARK


class StalledUpstream:
    """upstream = StalledUpstream().start(); point mongotap at upstream.address."""

    def __init__(self, answer=None, close_after=False):
        self.answer = answer
        self.close_after = close_after
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(512)
        self._listener.setblocking(False)
        self.port = self._listener.getsockname()[1]
        self.accepted = 0
        self.received = {}           # connection number -> bytearray
        self._monitors = set()       # connection numbers of mongotap's monitor
        self._next = 0
        self._conns = {}
        self._cond = threading.Condition()
        self._wake_r, self._wake_w = socket.socketpair()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="stalled-upstream", daemon=True)

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def start(self):
        self._thread.start()
        return self

    def total_received(self):
        with self._cond:
            return sum(len(b) for b in self.received.values())

    def wait_received(self, nbytes, timeout):
        """True once at least nbytes arrived over all connections, within timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while sum(len(b) for b in self.received.values()) < nbytes:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def close(self):
        self._stop = True
        self._wake_w.send(b"x")
        self._thread.join(10)
        for c in list(self._conns.values()):
            c.close()
        self._listener.close()
        self._wake_r.close()
        self._wake_w.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    def _run(self):
        sel = selectors.DefaultSelector()
        sel.register(self._listener, selectors.EVENT_READ, "accept")
        sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        while not self._stop:
            for key, _ in sel.select(1.0):
                if key.data == "wake":
                    return
                if key.data == "accept":
                    try:
                        conn, _ = self._listener.accept()
                    except BlockingIOError:
                        continue
                    conn.setblocking(False)
                    with self._cond:
                        n = self._next
                        self._next += 1
                        self.accepted += 1
                        self.received[n] = bytearray()
                        self._conns[n] = conn
                        self._cond.notify_all()
                    sel.register(conn, selectors.EVENT_READ, n)
                    continue
                n = key.data
                try:
                    data = key.fileobj.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:
                    # the proxy hung up: close our end too, still without a word
                    sel.unregister(key.fileobj)
                    key.fileobj.close()
                    self._conns.pop(n, None)
                    continue
                first = not self.received[n]
                if first and MONITOR_MARK in data:
                    # mongotap's upstream monitor: not a client's bytes, and no answer either
                    with self._cond:
                        self.accepted -= 1
                        del self.received[n]
                        self._monitors.add(n)
                    continue
                if n in self._monitors:
                    continue
                with self._cond:
                    self.received[n] += data
                    self._cond.notify_all()
                if first and self.answer is not None:
                    try:
                        key.fileobj.setblocking(True)
                        key.fileobj.sendall(self.answer)
                        key.fileobj.setblocking(False)
                    except OSError:
                        pass
                    if self.close_after:
                        sel.unregister(key.fileobj)
                        key.fileobj.close()
                        self._conns.pop(n, None)


def main():
    up = StalledUpstream().start()
    print("stalled upstream listening on %s (never answers)" % up.address, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        up.close()


if __name__ == "__main__":
    main()

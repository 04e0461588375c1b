"""A sink upstream: answers every plain OP_MSG with {ok: 1} at once and swallows every other
message (compressed ones included) without a word, counting the bytes it was sent. In front of it
the proxy's own costs can be measured: a bystander's round trips take no server time, and a
hostile client's bombs are received (so forwarded) but never decompressed by anyone."""

import selectors
import socket
import struct
import threading
import time

import bson

from helpers import MONITOR_MARK

OP_MSG = 2013
_OK = bson.BSON.encode({"ok": 1.0})


class SinkUpstream:
    """upstream = SinkUpstream().start(); point mongotap at upstream.address."""

    def __init__(self):
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(512)
        self._listener.setblocking(False)
        self.port = self._listener.getsockname()[1]
        self.received = 0  # bytes, over every connection
        self.messages = 0
        self._cond = threading.Condition()
        self._wake_r, self._wake_w = socket.socketpair()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="sink-upstream", daemon=True)

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def start(self):
        self._thread.start()
        return self

    def wait_received(self, nbytes, timeout):
        """True once at least nbytes arrived (over all connections) within timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.received < nbytes:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def close(self):
        self._stop = True
        self._wake_w.send(b"x")
        self._thread.join(10)
        self._listener.close()
        self._wake_r.close()
        self._wake_w.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    def _answer(self, conn, buf, count=True):
        """Answers the whole messages at the front of buf; returns what is left."""
        while len(buf) >= 16:
            length, request_id, _, opcode = struct.unpack_from("<iiii", buf)
            if len(buf) < length:
                break
            if opcode == OP_MSG:
                body = struct.pack("<I", 0) + b"\x00" + _OK
                reply = struct.pack("<iiii", 16 + len(body), 1, request_id, OP_MSG) + body
                conn.setblocking(True)
                conn.sendall(reply)
                conn.setblocking(False)
            del buf[:length]
            if count:
                with self._cond:
                    self.messages += 1
        return buf

    def _run(self):
        sel = selectors.DefaultSelector()
        sel.register(self._listener, selectors.EVENT_READ, None)
        sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        while not self._stop:
            for key, _ in sel.select(1.0):
                if key.data == "wake":
                    return
                if key.fileobj is self._listener:
                    try:
                        conn, _ = self._listener.accept()
                    except BlockingIOError:
                        continue
                    conn.setblocking(False)
                    # monitor: None until the first bytes say whether this is mongotap's
                    # own upstream monitor, whose messages are answered but not counted
                    sel.register(conn, selectors.EVENT_READ, {"buf": bytearray(), "monitor": None})
                    continue
                try:
                    data = key.fileobj.recv(1 << 20)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:
                    sel.unregister(key.fileobj)
                    key.fileobj.close()
                    continue
                st = key.data
                if st["monitor"] is None:
                    st["monitor"] = MONITOR_MARK in data
                if not st["monitor"]:
                    with self._cond:
                        self.received += len(data)
                        self._cond.notify_all()
                st["buf"].extend(data)
                try:
                    self._answer(key.fileobj, st["buf"], count=not st["monitor"])
                except OSError:
                    sel.unregister(key.fileobj)
                    key.fileobj.close()

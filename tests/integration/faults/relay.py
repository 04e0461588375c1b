"""A recording TCP relay: listens on 127.0.0.1, forwards each accepted connection to a target and
keeps every byte that went each way, per connection. Put one on each side of mongotap and the two
recordings of one connection must be identical. Half-closes are passed on (write_eof) and a reset
on one side resets the other, so the relay is as transparent about endings as about bytes.

Runs an asyncio loop on its own thread; the test thread reads the recordings once the
connections it cares about have ended (wait_closed)."""

import asyncio
import socket
import struct
import threading
import time

from faults.loop_thread import LoopThread
from helpers import MONITOR_MARK


class RelayConn:
    """One relayed connection. c2s: bytes the accepting side sent (toward the target); s2c: bytes
    the target sent back. ended: both directions finished; reset: ended by a reset or error."""

    def __init__(self, index, peer_port):
        self.index = index
        self.peer_port = peer_port      # port of the client that connected to the relay
        self.target_port = None         # our local port toward the target
        self.c2s = bytearray()
        self.s2c = bytearray()
        self.accepted_at = time.monotonic()
        self.ended_at = None
        self.reset = False
        self.connect_error = None
        self.c2s_end = None             # "eof" or "reset" once that direction finished
        self.s2c_end = None

    @property
    def ended(self):
        return self.ended_at is not None

    @property
    def monitor(self):
        """mongotap's own upstream monitoring connection, not one of a client's."""
        return MONITOR_MARK in self.c2s[:1024]

    def __repr__(self):
        return ("RelayConn(#%d peer=%s c2s=%d%s s2c=%d%s ended=%s reset=%s)"
                % (self.index, self.peer_port, len(self.c2s),
                   "/" + self.c2s_end if self.c2s_end else "", len(self.s2c),
                   "/" + self.s2c_end if self.s2c_end else "", self.ended, self.reset))


class RecordingRelay(LoopThread):
    """relay = RecordingRelay(host, port).start(); relay.port is where to connect."""

    name = "relay"

    def __init__(self, target_host, target_port, record=True):
        super().__init__()
        self.target = (target_host, int(target_port))
        self.record = record
        self.conns = []
        self.port = None
        self._cond = threading.Condition()
        self._server = None
        self._tasks = set()

    # -- control, from the test thread -----------------------------------------------------------

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def snapshot(self):
        """The relayed connections of clients (mongotap's monitor connections left out)."""
        with self._cond:
            return [c for c in self.conns if not c.monitor]

    def active(self):
        with self._cond:
            return sum(1 for c in self.conns if not c.ended and not c.monitor)

    def wait_closed(self, timeout, conns=None):
        """True once every connection (or every one in conns) has ended, within timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                pending = [c for c in (conns if conns is not None else self.conns)
                           if not c.ended and not c.monitor]
                left = deadline - time.monotonic()
                if not pending or left <= 0:
                    return not pending
                self._cond.wait(left)

    def wait_for(self, predicate, timeout):
        """predicate(conns) re-evaluated as connections come, send bytes and end; returns its
        last value (true once it held, within timeout)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = predicate(self.conns)
                left = deadline - time.monotonic()
                if value or left <= 0:
                    return value
                self._cond.wait(left)

    def wait_accepted(self, n, timeout):
        """True once at least n connections have been accepted, within timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.conns) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    # -- the loop thread -------------------------------------------------------------------------

    async def _setup(self):
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0, backlog=1024,
                                                  limit=1 << 20)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self):
        self._server.close()
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _finish(self, conn, reset):
        with self._cond:
            if conn.ended_at is None:
                conn.reset = conn.reset or reset
                conn.ended_at = time.monotonic()
                self._cond.notify_all()

    async def _accept(self, reader, writer):
        task = asyncio.current_task()
        self._tasks.add(task)
        peer = writer.get_extra_info("peername")
        with self._cond:
            conn = RelayConn(len(self.conns), peer[1] if peer else None)
            self.conns.append(conn)
            self._cond.notify_all()
        try:
            try:
                t_reader, t_writer = await asyncio.open_connection(*self.target, limit=1 << 20)
            except OSError as e:
                conn.connect_error = e
                _abort(writer)
                self._finish(conn, True)
                return
            sock = t_writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conn.target_port = sock.getsockname()[1]
            csock = writer.get_extra_info("socket")
            if csock is not None:
                csock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            up = asyncio.ensure_future(self._pump(reader, t_writer, conn.c2s, conn, "c2s_end"))
            down = asyncio.ensure_future(self._pump(t_reader, writer, conn.s2c, conn, "s2c_end"))
            pending = {up, down}
            reset = False
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if any(not f.cancelled() and f.result() == "reset" for f in done):
                    # a reset on one side resets the other: nothing more can be relayed
                    reset = True
                    _abort(writer)
                    _abort(t_writer)
                    for f in pending:
                        f.cancel()
                    await asyncio.gather(*pending, return_exceptions=True)
                    pending = set()
            if not reset:
                for w in (writer, t_writer):
                    w.close()
            self._finish(conn, reset)
        except asyncio.CancelledError:
            _abort(writer)
            self._finish(conn, True)
        finally:
            self._tasks.discard(task)

    async def _pump(self, reader, writer, record, conn, end_attr):
        """Copies reader to writer until EOF ("eof", passed on as a half-close) or an error
        ("reset"); notes which on conn."""
        result = await self._copy(reader, writer, record)
        with self._cond:
            setattr(conn, end_attr, result)
            self._cond.notify_all()
        return result

    async def _copy(self, reader, writer, record):
        try:
            while True:
                data = await reader.read(1 << 18)
                if not data:
                    break
                if self.record:
                    with self._cond:
                        record += data
                        self._cond.notify_all()
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof() and not writer.is_closing():
                writer.write_eof()
            return "eof"
        except (OSError, ConnectionError, asyncio.IncompleteReadError):
            return "reset"


def _abort(writer):
    transport = writer.transport
    if transport is not None and not transport.is_closing():
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                # SO_LINGER 0: close() sends a reset, as the failing peer did
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        transport.abort()


def main(argv=None):
    import argparse

    ap = argparse.ArgumentParser(description="Relay 127.0.0.1:<ephemeral> to TARGET and print "
                                 "per-connection byte counts when each connection ends.")
    ap.add_argument("target", help="HOST:PORT to forward to")
    args = ap.parse_args(argv)
    host, _, port = args.target.rpartition(":")
    relay = RecordingRelay(host, int(port)).start()
    print("relay listening on %s -> %s" % (relay.address, args.target), flush=True)
    seen = 0
    try:
        while True:
            relay.wait_accepted(seen + 1, 3600)
            conns = relay.snapshot()
            for c in conns[seen:]:
                relay.wait_closed(3600, [c])
                print(c, flush=True)
            seen = len(conns)
    except KeyboardInterrupt:
        relay.close()


if __name__ == "__main__":
    main()

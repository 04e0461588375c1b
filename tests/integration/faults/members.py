"""Scripted replica set members: small asyncio servers, one per member, that answer hello (and the
legacy isMaster, OP_QUERY or OP_MSG) as a primary or a secondary of set rs0 with one shared host
list, and forward every other message byte for byte to one real server (jongodb), each client
connection over its own connection to it. A test flips roles with step_down(); each member counts
the client connections it served, telling mongotap's monitor connections apart by the name they
give in their first hello.

    rs = ScriptedSet(jongodb_address, n=3).start()   # member 0 is primary
    rs.step_down(0, 1)                                # now member 1 is"""

import asyncio
import struct
import threading
import time

import bson
from bson.son import SON

from faults.loop_thread import LoopThread
from helpers import MONITOR_MARK

OP_REPLY = 1
OP_QUERY = 2004
OP_MSG = 2013
HELLO_NAMES = ("hello", "ismaster")


def _hello_command(opcode, body):
    """The command document of a hello/isMaster request, or None for anything else."""
    try:
        if opcode == OP_MSG and body[4] == 0:
            doc = bson.BSON(body[5:5 + struct.unpack_from("<i", body, 5)[0]]).decode(
                codec_options=bson.CodecOptions(document_class=SON))
        elif opcode == OP_QUERY:
            ns_end = body.index(b"\x00", 4)
            start = ns_end + 9
            doc = bson.BSON(body[start:start + struct.unpack_from("<i", body, start)[0]]).decode(
                codec_options=bson.CodecOptions(document_class=SON))
        else:
            return None
    except (IndexError, ValueError, struct.error, bson.errors.BSONError):
        return None
    name = next(iter(doc), "").lower()
    return doc if name in HELLO_NAMES else None


def _op_msg_reply(doc, request_id, response_to):
    body = struct.pack("<I", 0) + b"\x00" + bson.BSON.encode(doc)
    return struct.pack("<iiii", 16 + len(body), request_id, response_to, OP_MSG) + body


def _op_reply(doc, request_id, response_to):
    body = struct.pack("<iqii", 0, 0, 0, 1) + bson.BSON.encode(doc)
    return struct.pack("<iiii", 16 + len(body), request_id, response_to, OP_REPLY) + body


async def _read_message(reader):
    head = await reader.readexactly(16)
    length = struct.unpack_from("<i", head)[0]
    return head + await reader.readexactly(length - 16)


class MemberConn:
    """One client connection to a member."""

    def __init__(self, index):
        self.index = index
        self.monitor = None        # decided by the first message
        self.opened_at = time.monotonic()
        self.closed_at = None
        self.requests = 0          # forwarded to the real server
        self.hellos = 0


class ScriptedMember:
    def __init__(self, rs, index):
        self.rs = rs
        self.index = index
        self.role = "secondary"
        self.port = None
        self.alias = None
        self.conns = []
        self._server = None

    @property
    def name(self):
        """How the set's host lists name it: 127.0.0.1:port unless the test gave a name (a DNS
        name, a TLS terminator's port in front of it)."""
        return self.alias or "127.0.0.1:%d" % self.port

    def client_conns(self):
        """The connections of mongotap's sessions (its monitor's left out)."""
        with self.rs.lock:
            return [c for c in self.conns if c.monitor is False]

    def open_client_conns(self):
        return [c for c in self.client_conns() if c.closed_at is None]

    def _hello(self, cmd):
        doc = SON(self.rs.server_hello)
        doc.pop("topologyVersion", None)  # no streaming: drivers poll
        primary = self.role == "primary"
        doc["isWritablePrimary"] = primary
        doc["ismaster"] = primary
        doc["secondary"] = not primary
        doc["setName"] = "rs0"
        doc["hosts"] = [m.name for m in self.rs.members]
        doc["me"] = self.name
        leader = [m.name for m in self.rs.members if m.role == "primary"]
        if leader:
            doc["primary"] = leader[0]
        if primary:
            # as mongod does: a reply that left before an election carries the older id
            doc["electionId"] = bson.ObjectId("7fffffff%016x" % self.rs.election)
            doc["setVersion"] = 1
        doc["ok"] = 1.0
        return doc

    async def _serve(self, reader, writer):
        conn = MemberConn(len(self.conns))
        with self.rs.lock:
            self.conns.append(conn)
        up_reader = up_writer = pipe = None
        try:
            while True:
                try:
                    msg = await _read_message(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                request_id, opcode = struct.unpack_from("<i", msg, 4)[0], \
                    struct.unpack_from("<i", msg, 12)[0]
                if conn.monitor is None:
                    conn.monitor = MONITOR_MARK in msg
                cmd = _hello_command(opcode, msg[16:])
                if cmd is not None:
                    conn.hellos += 1
                    reply = self._hello(cmd)
                    self.rs.next_id += 1
                    writer.write(_op_reply(reply, self.rs.next_id, request_id)
                                 if opcode == OP_QUERY else
                                 _op_msg_reply(reply, self.rs.next_id, request_id))
                    await writer.drain()
                    continue
                if up_writer is None:
                    host, port = self.rs.target
                    up_reader, up_writer = await asyncio.open_connection(host, port)
                    pipe = asyncio.ensure_future(self._pipe(up_reader, writer))
                conn.requests += 1
                up_writer.write(msg)
                await up_writer.drain()
        finally:
            conn.closed_at = time.monotonic()
            if pipe:
                pipe.cancel()
            if up_writer:
                up_writer.close()
            writer.close()

    async def _pipe(self, up_reader, writer):
        """The real server's replies, whole messages, unchanged."""
        try:
            while True:
                writer.write(await _read_message(up_reader))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            writer.close()


class ScriptedSet(LoopThread):
    name = "scripted-set"

    def __init__(self, target, n=3):
        super().__init__()
        host, _, port = target.rpartition(":")
        self.target = (host, int(port))
        self.members = [ScriptedMember(self, i) for i in range(n)]
        self.members[0].role = "primary"
        self.lock = threading.Lock()
        self.next_id = 100000
        self.election = 1
        self.server_hello = None

    def seeds(self):
        return ",".join(m.name for m in self.members)

    def step_down(self, old, new):
        """Member `old` becomes a secondary and `new` the primary, at once."""
        self.members[old].role = "secondary"
        self.members[new].role = "primary"
        self.election += 1

    async def _shutdown(self):
        for m in self.members:
            m._server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _setup(self):
        # what the real server says of itself (wire versions, sizes, sessions)
        reader, writer = await asyncio.open_connection(*self.target)
        body = struct.pack("<I", 0) + b"\x00" + bson.BSON.encode({"hello": 1, "$db": "admin"})
        writer.write(struct.pack("<iiii", 16 + len(body), 1, 0, OP_MSG) + body)
        reply = await _read_message(reader)
        writer.close()
        self.server_hello = bson.BSON(reply[21:]).decode(
            codec_options=bson.CodecOptions(document_class=SON))
        for m in self.members:
            m._server = await asyncio.start_server(m._serve, "127.0.0.1", 0)
            m.port = m._server.sockets[0].getsockname()[1]

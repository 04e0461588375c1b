"""Raw wire-protocol pieces for hostile clients: messages built byte by byte (so they can be
wrong in exactly one place), BSON that no driver would produce, OP_COMPRESSED bombs, a reader
that tells a clean close from a truncated reply, and a prober that sends one input per
connection and reports how the connection ended."""

import concurrent.futures
import socket
import struct
import time
import zlib

import bson

OP_REPLY = 1
OP_QUERY = 2004
OP_COMPRESSED = 2012
OP_MSG = 2013

COMPRESSOR_NOOP, COMPRESSOR_SNAPPY, COMPRESSOR_ZLIB, COMPRESSOR_ZSTD = 0, 1, 2, 3
MAX_MESSAGE = 48_000_000


def header(length, request_id=1, response_to=0, opcode=OP_MSG):
    return struct.pack("<iiii", length, request_id, response_to, opcode)


def message(opcode, body, request_id=1, response_to=0):
    """A message whose header length matches its body."""
    return header(16 + len(body), request_id, response_to, opcode) + body


def op_msg(doc, request_id=1, flags=0):
    """OP_MSG with one kind-0 section; doc is a dict or already-encoded BSON bytes."""
    raw = doc if isinstance(doc, (bytes, bytearray)) else bson.BSON.encode(doc)
    return message(OP_MSG, struct.pack("<I", flags) + b"\x00" + bytes(raw), request_id)


def op_msg_sections(sections, request_id=1, flags=0):
    """OP_MSG from raw section bytes (kind byte included)."""
    return message(OP_MSG, struct.pack("<I", flags) + b"".join(sections), request_id)


def kind1_section(identifier, docs):
    """A kind-1 (document sequence) section."""
    payload = identifier + b"\x00" + b"".join(bson.BSON.encode(d) for d in docs)
    return b"\x01" + struct.pack("<i", 4 + len(payload)) + payload


def op_query(collection, query, request_id=1):
    body = (struct.pack("<i", 0) + collection.encode() + b"\x00" + struct.pack("<ii", 0, -1)
            + bson.BSON.encode(query))
    return message(OP_QUERY, body, request_id)


def op_compressed(original_opcode, declared_size, compressor, payload, request_id=1):
    body = struct.pack("<iiB", original_opcode, declared_size, compressor) + payload
    return message(OP_COMPRESSED, body, request_id)


# --- BSON built by hand ------------------------------------------------------------------------

def bson_raw(elements):
    """A BSON document around already-encoded elements."""
    body = b"".join(elements)
    return struct.pack("<i", 4 + len(body) + 1) + body + b"\x00"


def el_str(key, value):
    """A string element; key and value are bytes, so either may be invalid UTF-8."""
    return b"\x02" + key + b"\x00" + struct.pack("<i", len(value) + 1) + value + b"\x00"


def el_doc(key, doc_bytes):
    return b"\x03" + key + b"\x00" + doc_bytes


def el_int32(key, value):
    return b"\x10" + key + b"\x00" + struct.pack("<i", value)


def deep_doc(depth, key=b"a"):
    """{a: {a: ... {} }} nested depth levels. Laid out directly (each level adds the same
    bytes before and after its child), so a million levels cost no more than writing them."""
    head = b"\x03" + key + b"\x00"
    step = 4 + len(head) + 1
    inner = 5  # the empty document
    parts = []
    for level in range(depth, 0, -1):
        parts.append(struct.pack("<i", inner + step * level) + head)
    parts.append(b"\x05\x00\x00\x00\x00")
    parts.append(b"\x00" * depth)
    return b"".join(parts)


def find_command(collection, filter_bytes, db=b"rel"):
    """{find: collection, filter: <raw>, $db: db} with every piece given as bytes."""
    return bson_raw([el_str(b"find", collection), el_doc(b"filter", filter_bytes),
                     el_str(b"$db", db)])


# --- compression -------------------------------------------------------------------------------

def _pieces(parts, size=1 << 20):
    """The bytes of parts (bytes, or (byte value, count) for a run) in pieces of at most
    size bytes, so that a 48 MB run never exists in memory."""
    for part in parts:
        if isinstance(part, (bytes, bytearray)):
            yield bytes(part)
            continue
        value, left = part
        chunk = bytes([value]) * min(left, size)
        while left > 0:
            yield chunk[:min(left, size)]
            left -= min(left, size)


def parts_len(parts):
    return sum(len(p) if isinstance(p, (bytes, bytearray)) else p[1] for p in parts)


def zlib_of(parts, level=9):
    """zlib stream of parts (see _pieces), produced in pieces."""
    c = zlib.compressobj(level)
    out = [c.compress(piece) for piece in _pieces(parts)]
    out.append(c.flush())
    return b"".join(out)


def zlib_of_zeros(n, level=6):
    """zlib stream of n zero bytes, produced in pieces (never n bytes in memory at once)."""
    return zlib_of([(0, n)], level)


ZSTD_BLOCK_MAX = 128 * 1024


def zstd_rle_frame(parts):
    """A zstd frame written by hand, as a bomb is: bytes go in raw blocks, runs in RLE blocks
    (4 bytes for each 128 KiB of output), and the frame declares its content size. 48 MB of
    zeros take 1.5 KB."""
    out = bytearray(struct.pack("<IB", 0xFD2FB528, 0xA0))  # single segment, 4-byte size
    out += struct.pack("<I", parts_len(parts))
    blocks = []
    for part in parts:
        if isinstance(part, (bytes, bytearray)):
            blocks += [(0, part[i:i + ZSTD_BLOCK_MAX])
                       for i in range(0, len(part), ZSTD_BLOCK_MAX)]
        else:
            value, left = part
            while left > 0:
                blocks.append((1, (value, min(left, ZSTD_BLOCK_MAX))))
                left -= min(left, ZSTD_BLOCK_MAX)
    for i, (kind, data) in enumerate(blocks):
        last = 1 if i == len(blocks) - 1 else 0
        if kind == 0:
            out += (last | len(data) << 3).to_bytes(3, "little") + data
        else:
            out += (last | 1 << 1 | data[1] << 3).to_bytes(3, "little") + bytes([data[0]])
    return bytes(out)


def compressed_parts(compressor, parts, original_opcode=OP_MSG, request_id=1):
    """OP_COMPRESSED (zlib or zstd) of the inner message body given as parts."""
    payload = (zlib_of(parts) if compressor == COMPRESSOR_ZLIB else zstd_rle_frame(parts))
    return op_compressed(original_opcode, parts_len(parts), compressor, payload, request_id)


def insert_parts(collection, doc_sizes, fill=0, db=b"hostile"):
    """The inner body (after the header) of an OP_MSG insert: flags, {insert, $db}, then a
    document sequence of one-string documents of the given sizes, each string a run of
    `fill`. As parts, so that 48 MB of it never exist at once."""
    body = bson_raw([el_str(b"insert", collection), el_str(b"$db", db)])
    docs = []
    for size in doc_sizes:
        # int32 length, 0x02 "s\0", int32 string length, the run, NUL, end of document
        docs += [struct.pack("<i", size) + b"\x02s\x00" + struct.pack("<i", size - 11),
                 (fill, size - 12), b"\x00\x00"]
    seq_len = 4 + len(b"documents\x00") + sum(doc_sizes)
    return [struct.pack("<I", 0) + b"\x00" + body,
            b"\x01" + struct.pack("<i", seq_len) + b"documents\x00"] + docs


def insert_bomb(compressor, request_id=1, collection=b"bomb"):
    """A compression bomb that looks like work: a valid insert whose document sequence holds
    three 15.9 MB documents of zeros, 47.7 MB in all, in 46 KB of zlib or 1.5 KB of zstd.
    Decompressed whole it costs 48 MB; what accounting reads of it is a few hundred bytes."""
    return compressed_parts(compressor, insert_parts(collection, [15_900_000] * 3), OP_MSG,
                            request_id)


def snappy_varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def snappy_literal(data):
    """A raw snappy block element: a literal of up to 60 bytes."""
    assert 0 < len(data) <= 60
    return bytes([(len(data) - 1) << 2]) + data


# --- reading replies ---------------------------------------------------------------------------

class Truncated(Exception):
    """The peer closed in the middle of a message."""


class MessageReader:
    """Reads whole messages from a socket and tells how the stream ended: read() returns
    (header tuple, body) or None when the peer closed (EOF or reset) between messages; it
    raises Truncated when the close fell inside a message."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()
        self.ended_by = None

    def _fill(self):
        try:
            chunk = self.sock.recv(1 << 18)
        except (ConnectionResetError, BrokenPipeError):
            self.ended_by = "reset"
            return False
        if not chunk:
            self.ended_by = "eof"
            return False
        self.buf += chunk
        return True

    def read(self):
        while len(self.buf) < 16:
            if not self._fill():
                if self.buf:
                    raise Truncated("closed after %d header bytes (%s)"
                                    % (len(self.buf), self.ended_by))
                return None
        length = struct.unpack_from("<i", self.buf)[0]
        if length < 16 or length > MAX_MESSAGE:
            raise Truncated("impossible reply length %d" % length)
        while len(self.buf) < length:
            if not self._fill():
                raise Truncated("closed after %d of %d bytes (%s)"
                                % (len(self.buf), length, self.ended_by))
        msg = bytes(self.buf[:length])
        del self.buf[:length]
        return struct.unpack_from("<iiii", msg), msg[16:]


def reply_doc(body):
    """The kind-0 document of an OP_MSG reply body."""
    assert body[4] == 0, "first section is kind %d" % body[4]
    return bson.BSON(body[5:]).decode()


# --- one hostile input per connection ----------------------------------------------------------

class ProbeResult:
    def __init__(self, name):
        self.name = name
        self.outcome = None      # "closed", "answered", "open", "client-closed", "connect-failed"
        self.reply = b""
        self.seconds = None
        self.send_error = None

    def __repr__(self):
        return "%s: %s (%d reply bytes, %.3fs%s)" % (
            self.name, self.outcome, len(self.reply), self.seconds or 0,
            ", send: %s" % self.send_error if self.send_error else "")


def set_linger_reset(sock):
    """After this, close() sends RST instead of FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def probe(addr, name, data, end="shutdown", timeout=3.0):
    """Connects, sends data, then ends the client side: "shutdown" (half-close and wait for the
    far end to close or answer), "close" (full close at once) or "reset" (RST at once)."""
    r = ProbeResult(name)
    start = time.monotonic()
    try:
        s = socket.create_connection(addr, timeout=timeout)
    except OSError as e:
        r.outcome = "connect-failed"
        r.send_error = repr(e)
        return r
    with s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            s.sendall(data)
        except OSError as e:
            r.send_error = type(e).__name__
        if end in ("close", "reset"):
            if end == "reset":
                set_linger_reset(s)
            r.outcome = "client-closed"
            r.seconds = time.monotonic() - start
            return r
        try:
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        deadline = start + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                r.outcome = "open"
                break
            s.settimeout(left)
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                r.outcome = "open"
                break
            except OSError:
                chunk = b""
            if not chunk:
                r.outcome = "answered" if r.reply else "closed"
                break
            r.reply += chunk
    r.seconds = time.monotonic() - start
    return r


def probe_all(addr, inputs, parallel=12, timeout=3.0):
    """Runs probe() for each (name, data, end) in inputs, `parallel` connections at a time."""
    with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
        futs = [pool.submit(probe, addr, name, data, end, timeout) for name, data, end in inputs]
        return [f.result() for f in futs]


def frame_walk(data):
    """How mongotap's framer must see data: a list of ("ok", opcode, length) for each whole
    message and, last, ("impossible", length) for a header that must close the connection or
    ("partial", n) for bytes left over."""
    out = []
    off = 0
    while len(data) - off >= 16:
        length, _, _, opcode = struct.unpack_from("<iiii", data, off)
        if length < 16 or length > MAX_MESSAGE:
            out.append(("impossible", length))
            return out
        if off + length > len(data):
            break
        out.append(("ok", opcode, length))
        off += length
    if off < len(data):
        out.append(("partial", len(data) - off))
    return out


def mutate(rng, msg, fix_length=True):
    """A random corruption of msg: flipped bytes, a cut, a splice or a duplicated run. With
    fix_length the header length is rewritten to the new size, so the corruption reaches the
    message parser instead of the framer."""
    b = bytearray(msg)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        if op == 0 and len(b) > 16:
            for _ in range(rng.randint(1, 8)):
                b[rng.randrange(16, len(b))] = rng.randrange(256)
        elif op == 1 and len(b) > 17:
            del b[rng.randrange(16, len(b)):]
        elif op == 2:
            pos = rng.randrange(16, len(b) + 1)
            b[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif op == 3 and len(b) > 20:
            i = rng.randrange(16, len(b) - 4)
            b[i:i + 4] = struct.pack("<i", rng.choice(
                [-1, 0, 1, 4, 5, 0x7FFFFFFF, -0x80000000, len(b), len(b) + 1, 16_000_000]))
        elif op == 4 and len(b) > 24:
            i = rng.randrange(16, len(b) - 8)
            j = rng.randrange(i, min(len(b), i + 64))
            b[j:j] = b[i:j]
    if fix_length:
        struct.pack_into("<i", b, 0, len(b))
    return bytes(b)


def random_bytes(rng, n):
    return bytes(rng.randrange(256) for _ in range(n))


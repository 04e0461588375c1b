#!/usr/bin/env python3
"""Builds the fuzz_stats seeds from the captured wire fixtures: each scenario's
messages in order as one stream, with request ids rewritten so that the low
bit says request (0) or reply (1), as fuzz_stats reads it."""
import collections
import pathlib
import struct

root = pathlib.Path(__file__).resolve().parent
wire = root.parent / "fixtures" / "wire"
out = root / "corpus" / "fuzz_stats"
out.mkdir(parents=True, exist_ok=True)

scenarios = collections.defaultdict(list)
for f in sorted(wire.glob("*-*-*.bin")):
    name, seq, direction = f.stem.rsplit("-", 2)
    scenarios[name].append((int(seq), direction, f.read_bytes()))

for name, msgs in scenarios.items():
    stream = bytearray()
    renamed = {}
    for i, (_, direction, data) in enumerate(sorted(msgs)):
        old_rid, response_to = struct.unpack_from("<ii", data, 4)
        rid = (i << 2) | (1 if direction == "s2c" else 0)
        renamed[old_rid] = rid
        response_to = renamed.get(response_to, response_to)
        stream += data[:4] + struct.pack("<ii", rid, response_to) + data[12:]
    (out / f"{name}.bin").write_bytes(bytes(stream))
    print(f"{name}: {len(msgs)} messages, {len(stream)} bytes")

#!/usr/bin/env python3
"""Builds the fuzz_protocol seeds for bounded decompression: a zlib and a zstd OP_COMPRESSED
insert of 1.8 MB (three 600 KB documents) in a few KB, so that the fuzzer starts from messages
decompressed only in part."""
import pathlib
import sys

root = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(root.parent / "integration"))

from faults import wire  # noqa: E402

parts = wire.insert_parts(b"c", [600_000] * 3, fill=ord("y"), db=b"d")
for name, compressor in (("zlib", wire.COMPRESSOR_ZLIB), ("zstd", wire.COMPRESSOR_ZSTD)):
    msg = wire.compressed_parts(compressor, parts, request_id=5)
    path = root / "corpus" / ("inflate_%s_insert.bin" % name)
    path.write_bytes(msg)
    print("%s: %d bytes, %d decompressed" % (path.name, len(msg), wire.parts_len(parts)))

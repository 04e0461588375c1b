"""Fault injection helpers for the reliability and security tests: a recording TCP relay, an
upstream that accepts and never answers, builders for malformed wire messages, and readers of a
process's file descriptors, memory and CPU time from /proc. Each module also runs on its own
(`python3 -m faults.relay ...`) for poking at a proxy by hand."""

"""What the detection tests share: clients through mongotap, and the checks every finding must
pass (schema mongotap.finding/1, SPEC sections 5 and 5a), its warn log line, and the rule that
user data values never appear in findings or logs."""

import json
import re

import pymongo

import helpers

GAP_MS = 300  # --window-gap-ms for most tests: far above a lookup's round trip

FINDING_KEYS = {"schema", "id", "type", "detected_at", "confidence", "client", "window", "parent",
                "children", "field", "matched", "suggestion"}
FINDING_TYPES = {"n_plus_one", "write_loop", "repeated_read"}
ISO_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
ADDR_RE = re.compile(r"^127\.0\.0\.1:\d+$")
WARN_RE = re.compile(r"^\S+Z warn ")  # mongotap's log line at level warn


def tap_client(tap, appname, db="test", **kw):
    """A pymongo client through tap on one pooled connection (so one window), unless kw says."""
    kw.setdefault("maxPoolSize", 1)
    return pymongo.MongoClient(tap.uri(db), appname=appname, **kw)


def check_finding(f):
    """The parts of the finding schema every finding of every type has; returns f."""
    assert FINDING_KEYS <= set(f), sorted(f)
    assert f["schema"] == "mongotap.finding/1", f
    assert re.match(r"^f-\d{6}$", f["id"]), f["id"]
    assert f["type"] in FINDING_TYPES, f["type"]
    assert ISO_RE.match(f["detected_at"]), f["detected_at"]
    assert f["confidence"] in ("high", "medium"), f
    assert set(f["client"]) >= {"addr", "app_name", "driver"}, f["client"]
    assert ADDR_RE.match(f["client"]["addr"]), f["client"]
    w = f["window"]
    assert set(w) >= {"id", "connection_id", "key", "started_at", "duration_ms", "commands"}, w
    assert ISO_RE.match(w["started_at"]), w
    if f["parent"] is not None:
        assert set(f["parent"]) >= {"db", "collection", "command", "shape", "docs_returned",
                                    "duration_ms"}, f["parent"]
    c = f["children"]
    assert set(c) >= {"db", "collection", "command", "shape", "key", "count", "duration_ms"}, c
    assert isinstance(c["count"], int) and c["count"] > 0, c
    assert f["field"] is None or isinstance(f["field"], str), f
    # high confidence means the field is known, medium that it is not (repeated reads have none)
    if f["type"] != "repeated_read":
        assert (f["confidence"] == "high") == (f["field"] is not None), f
    assert isinstance(f["suggestion"], str) and f["suggestion"], f
    return f


def findings_of(doc, type_):
    """The findings of one type in a /api/findings answer, each checked against the schema."""
    return [check_finding(f) for f in doc["findings"] if f["type"] == type_]


def only_finding(doc, type_="n_plus_one"):
    """The one finding of a /api/findings answer, which must be of type_."""
    assert len(doc["findings"]) == 1, json.dumps(doc, indent=1)
    f = check_finding(doc["findings"][0])
    assert f["type"] == type_, json.dumps(f, indent=1)
    return f


def shape(part):
    """The shape of a finding's parent or children, parsed."""
    return json.loads(part["shape"])


def namespace(part):
    return "%s.%s" % (part["db"], part["collection"])


def assert_no_values(text_or_doc, values):
    """User data values never appear in a finding or a log line without --log-values."""
    text = text_or_doc if isinstance(text_or_doc, str) else json.dumps(text_or_doc)
    for v in values:
        assert str(v) not in text, (v, text[:3000])


def warn_lines_for(tap, f):
    """mongotap's warn lines that name finding f: its id, its type, its parent's namespace (when
    it has a parent), its children's namespace and their count as a word."""
    count_re = re.compile(r"\b%d\b" % f["children"]["count"])
    names = [f["id"] + " ", f["type"], namespace(f["children"])]
    if f["parent"] is not None:
        names.append(namespace(f["parent"]))
    return [line for line in tap.log_lines()
            if WARN_RE.match(line) and all(n in line for n in names) and count_re.search(line)]


def assert_warn_lines(tap, findings, fixes, timeout=5):
    """Each finding logged exactly one warn line on mongotap's stderr holding its id, type, the
    parent and child namespaces, the count, the field and the fix (one of the words in fixes)."""
    for f in findings:
        lines = helpers.poll("the warn line of %s (%s on %s)" % (f["id"], f["type"],
                                                               namespace(f["children"])),
                             lambda: warn_lines_for(tap, f), timeout=timeout)
        assert len(lines) == 1, (lines, f)
        if f["field"] is not None:
            assert f["field"] in lines[0], (lines[0], f["field"])
        assert any(fix in lines[0] for fix in fixes), (lines[0], fixes)


def assert_reported(tap, findings, fixes, values=()):
    """Each finding logged its warn line (assert_warn_lines), and no user value in `values`
    shows in the findings or anywhere in mongotap's log."""
    for f in findings:
        assert_no_values(f, values)
    assert_warn_lines(tap, findings, fixes)
    assert_no_values(tap.logs(), values)

"""Requests the TV guide's pages with Flask's test client (no server needed): the listing lazily,
then with select_related(); "mark all watched" with one save() per show and the viewer read per
row, then fixed (one update, one viewer query). Prints for each page the MongoDB commands the
driver sent and the server time mongotap measured for them (from its /api/stats, before and
after), and, once the page's request window has closed, what mongotap found in it.
    MONGODB_URI=... python3 visit.py [--admin http://127.0.0.1:27080]"""

import argparse
import json
import os
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from app import create_app  # noqa: E402

PAGES = [("GET", "/", "lazy references"), ("GET", "/?select_related=1", "select_related()"),
         ("POST", "/watched", "save() per show"), ("POST", "/watched?fixed=1", "one update")]


# the driver's own heartbeats and handshakes, which no page asked for
MONITORING = {"hello", "ismaster", "ping", "buildinfo", "saslstart", "saslcontinue", "endsessions",
              "getlasterror"}


def admin_get(admin, path):
    """The admin API's JSON answer for path, or None without an admin API or when it fails."""
    if not admin:
        return None
    try:
        with urllib.request.urlopen(admin.rstrip("/") + path, timeout=5) as r:
            return json.load(r)
    except (OSError, ValueError):
        return None


def mongotap_totals(admin):
    """(commands, server ms) over the app's shapes in mongotap's stats, leaving out monitoring
    commands; None without an admin API."""
    stats = admin_get(admin, "/api/stats?limit=100000")
    if stats is None:
        return None
    shapes = [s for s in stats.get("shapes", []) if s.get("command", "").lower() not in MONITORING]
    return (sum(s.get("count", 0) for s in shapes),
            sum(s.get("latency_ms", {}).get("sum", 0.0) for s in shapes))


def page_findings(admin, seen, timeout=5.0):
    """The findings mongotap made since `seen` (a set of ids, updated), once every request
    window has closed (at most timeout seconds); None without an admin API."""
    deadline = time.monotonic() + timeout
    while True:
        stats = admin_get(admin, "/api/stats?limit=1")
        if stats is None:
            return None
        if stats.get("windows", {}).get("open", 0) == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    doc = admin_get(admin, "/api/findings") or {}
    new = [f for f in doc.get("findings", []) if f.get("id") not in seen]
    seen.update(f.get("id") for f in new)
    return new


def describe(f):
    """One line for a finding: its type, what repeated, how often, the field and the fix."""
    p, c = f.get("parent"), f.get("children", {})
    what = "%d x %s %s" % (c.get("count", 0), c.get("collection"), c.get("command"))
    if c.get("key"):
        what += " by %s" % c["key"]
    if p:
        what = "%s %s -> %s" % (p.get("collection"), p.get("command"), what)
    if f.get("field"):
        what += ", field %s" % f["field"]
    return "    mongotap %s %s (%s): %s\n      fix: %s" % (
        f.get("id"), f.get("type"), f.get("confidence"), what, f.get("suggestion"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--admin", default=os.environ.get("MONGOTAP_ADMIN_URL"),
                        help="mongotap admin URL, e.g. http://127.0.0.1:27080")
    parser.add_argument("--pause", type=float, default=0.5,
                        help="seconds between pages, longer than mongotap's window gap")
    args = parser.parse_args()

    client = create_app().test_client()
    seen = {f.get("id") for f in (admin_get(args.admin, "/api/findings") or {}).get("findings", [])}
    for i, (method, path, label) in enumerate(PAGES):
        if i:
            time.sleep(args.pause)  # a person clicking: each page is its own request window
        before = mongotap_totals(args.admin)
        resp = client.open(path, method=method)
        after = mongotap_totals(args.admin)
        if resp.status_code != 200:
            print("%s %s -> %d" % (method, path, resp.status_code))
            return 1
        rows = resp.get_data(as_text=True).count("<tr><td>")
        line = ("%-4s %-20s %-17s %2d shows  driver: %3s commands (%s find, %s update), %6s ms"
                % (method, path, label, rows, resp.headers["X-Mongo-Commands"],
                   resp.headers["X-Mongo-Finds"], resp.headers["X-Mongo-Updates"],
                   resp.headers["X-Mongo-Time-Ms"]))
        if before and after:
            line += "  mongotap: %d commands, %.2f ms server time" % (
                after[0] - before[0], after[1] - before[1])
        print(line)
        found = page_findings(args.admin, seen)
        if found is not None:
            for f in found:
                print(describe(f))
            if not found:
                print("    mongotap: no finding")
    return 0


if __name__ == "__main__":
    sys.exit(main())

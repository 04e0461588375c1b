"""Requests the TV guide's listing page twice with Flask's test client (no server needed):
lazily, then with select_related(), and prints for each page the MongoDB commands the driver
sent and the server time mongotap measured for them (from its /api/stats, before and after).
    MONGODB_URI=... python3 visit.py [--admin http://127.0.0.1:27080]"""

import argparse
import json
import os
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from app import create_app  # noqa: E402

PAGES = [("/", "lazy references"), ("/?select_related=1", "select_related()")]


# the driver's own heartbeats and handshakes, which no page asked for
MONITORING = {"hello", "ismaster", "ping", "buildinfo", "saslstart", "saslcontinue", "endsessions",
              "getlasterror"}


def mongotap_totals(admin):
    """(commands, server ms) over the app's shapes in mongotap's stats, leaving out monitoring
    commands; None without an admin API."""
    if not admin:
        return None
    try:
        with urllib.request.urlopen(admin.rstrip("/") + "/api/stats?limit=100000", timeout=5) as r:
            stats = json.load(r)
    except (OSError, ValueError):
        return None
    shapes = [s for s in stats.get("shapes", []) if s.get("command", "").lower() not in MONITORING]
    return (sum(s.get("count", 0) for s in shapes),
            sum(s.get("latency_ms", {}).get("sum", 0.0) for s in shapes))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--admin", default=os.environ.get("MONGOTAP_ADMIN_URL"),
                        help="mongotap admin URL, e.g. http://127.0.0.1:27080")
    parser.add_argument("--pause", type=float, default=0.5,
                        help="seconds between pages, longer than mongotap's window gap")
    args = parser.parse_args()

    client = create_app().test_client()
    for i, (path, label) in enumerate(PAGES):
        if i:
            time.sleep(args.pause)  # a person clicking: each page is its own request window
        before = mongotap_totals(args.admin)
        resp = client.get(path)
        after = mongotap_totals(args.admin)
        if resp.status_code != 200:
            print("GET %s -> %d" % (path, resp.status_code))
            return 1
        rows = resp.get_data(as_text=True).count("<tr><td>")
        line = ("GET %-20s %-17s %2d shows  driver: %3s commands (%s find), %6s ms"
                % (path, label, rows, resp.headers["X-Mongo-Commands"],
                   resp.headers["X-Mongo-Finds"], resp.headers["X-Mongo-Time-Ms"]))
        if before and after:
            line += "  mongotap: %d commands, %.2f ms server time" % (
                after[0] - before[0], after[1] - before[1])
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())

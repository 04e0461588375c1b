"""The TV guide's test: loads the listing page with Flask's test client and asserts that it
renders every show with its channel. Run it through mongotap to fail the build on an N+1:
    mongotap run -- python3 listing_test.py                    # the lazy page: exits 1
    mongotap run -- python3 listing_test.py --select-related   # the fixed page: exits 0
It uses $MONGODB_URI, which `mongotap run` points at its proxy."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from app import create_app  # noqa: E402
from models import Channel, Show  # noqa: E402


def main():
    select_related = "--select-related" in sys.argv[1:]
    client = create_app().test_client()
    resp = client.get("/?select_related=1" if select_related else "/")
    assert resp.status_code == 200, resp.status_code
    page = resp.get_data(as_text=True)
    shows = Show.objects.count()
    rows = page.count("<tr><td>")
    assert shows > 0 and rows == shows, "%d rows for %d shows" % (rows, shows)
    names = {c.name for c in Channel.objects}
    assert all(name in page for name in names), "a channel name is missing"
    print("listing_test: %d shows rendered (%s)" % (rows, "select_related()" if select_related
                                                     else "lazy references"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

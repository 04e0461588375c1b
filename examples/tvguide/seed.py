"""Seeds the TV guide: 20 channels, 50 shows (none watched yet) and the one viewer the demo signs in
as, the same every run (fixed ids and times).
Existing documents are deleted first, so it can run any number of times.
    MONGODB_URI=mongodb://127.0.0.1:27018/tvguide?directConnection=true python3 seed.py"""

import datetime
import os
import sys

from bson import ObjectId
from mongoengine import connect, disconnect

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from models import VIEWER, Channel, Show, Viewer  # noqa: E402

DEFAULT_URI = "mongodb://127.0.0.1:27018/tvguide?directConnection=true"

CHANNEL_NAMES = [
    "Northwind One", "Harbour TV", "Meridian", "Cobalt News", "Fieldhouse Sports",
    "Lantern Kids", "Atlas Docs", "Velvet Movies", "Signal Nine", "Quarry Comedy",
    "Beacon Weather", "Orchard Living", "Ironwood Drama", "Tidewater", "Summit Music",
    "Parallax Sci-Fi", "Copperline", "Junction Travel", "Ember Food", "Nightjar Classics",
]

SHOW_FIRST = ["Morning", "Late Night", "Hidden", "Wild", "Grand", "Weekend", "Coastal", "Urban",
              "Midnight", "Golden"]
SHOW_SECOND = ["News", "Kitchen", "Gardens", "Journeys", "Quiz", "Stories", "Cinema", "Report",
               "Live", "Workshop", "Debate", "Countdown", "Safari"]

BASE = datetime.datetime(2026, 11, 25, 6, 0, 0)


def oid(kind, i):
    """A fixed ObjectId per document: kind 1 = channel, 2 = show, 3 = viewer."""
    return ObjectId("%02x%022x" % (kind, i))


def seed(uri=None):
    uri = uri or os.environ.get("MONGODB_URI", DEFAULT_URI)
    disconnect()
    connect(host=uri, appname="tvguide-seed", uuidRepresentation="standard")
    # jongodb has no drop command: clear with deletes instead of drop_collection()
    Show.objects.delete()
    Channel.objects.delete()
    Viewer.objects.delete()
    channels = [Channel(id=oid(1, i), name=name, number=i + 1)
                for i, name in enumerate(CHANNEL_NAMES)]
    Channel.objects.insert(channels, load_bulk=False)
    shows = []
    for i in range(50):
        title = "%s %s" % (SHOW_FIRST[i % len(SHOW_FIRST)], SHOW_SECOND[i % len(SHOW_SECOND)])
        start = BASE + datetime.timedelta(minutes=30 * (i // 5), seconds=i)
        shows.append(Show(id=oid(2, i), title=title, start=start,
                          channel=channels[(i * 13) % len(channels)]))
    Show.objects.insert(shows, load_bulk=False)
    Viewer.objects.insert([Viewer(id=oid(3, 0), username=VIEWER, name="Sam Viewer")],
                          load_bulk=False)
    counts = (Channel.objects.count(), Show.objects.count())
    disconnect()
    return counts


if __name__ == "__main__":
    nchannels, nshows = seed()
    print("seeded %d channels and %d shows" % (nchannels, nshows))

"""The classic lazy-reference N+1 with mongoengine, for the tests of the live views and of the
detectors: 20 channels, 50 shows with a ReferenceField to their channel, then a listing that reads
show.channel.name for every show (1 find on show + 50 single-_id finds on channel)."""

import time

from bson import ObjectId
from mongoengine import Document, ReferenceField, StringField, connect, disconnect

import helpers

ALIAS = "mongotap_lazy"
N_CHANNELS = 20
N_SHOWS = 50


class LazyChannel(Document):
    name = StringField(required=True)
    meta = {"collection": "channel", "db_alias": ALIAS, "auto_create_index": False}


class LazyShow(Document):
    title = StringField(required=True)
    channel = ReferenceField(LazyChannel)
    meta = {"collection": "show", "db_alias": ALIAS, "auto_create_index": False}


def seed_guide(seed, db):
    """Seeds the guide with seed, a pymongo client straight to the server (outside mongotap's
    view): show i is on channel i % 20. Returns the channel ids."""
    channels = [ObjectId() for _ in range(N_CHANNELS)]
    seed[db].channel.insert_many([{"_id": c, "name": "Channel %02d" % i}
                                  for i, c in enumerate(channels)])
    seed[db].show.insert_many([{"_id": ObjectId(), "title": "Show %02d" % i,
                                "channel": channels[i % N_CHANNELS]} for i in range(N_SHOWS)])
    return channels


def run(uri):
    """Seeds and lists the guide lazily through uri; returns the channel name of each show."""
    connect(host=uri, alias=ALIAS)
    try:
        channels = [LazyChannel(name="Channel %02d" % i).save() for i in range(N_CHANNELS)]
        LazyShow.objects.insert([LazyShow(title="Show %02d" % i, channel=channels[i % N_CHANNELS])
                                 for i in range(N_SHOWS)], load_bulk=False)
        names = [show.channel.name for show in LazyShow.objects]
    finally:
        disconnect(alias=ALIAS)
    assert len(names) == N_SHOWS and len(set(names)) == N_CHANNELS, names
    return names


def list_guide(uri):
    """The page alone, on a guide seed_guide() filled: one find on show, then one find on channel
    per show (51 commands in one request window). Returns the channel name of each show."""
    connect(host=uri, alias=ALIAS)
    try:
        names = [show.channel.name for show in LazyShow.objects]
    finally:
        disconnect(alias=ALIAS)
    assert len(names) == N_SHOWS and len(set(names)) == N_CHANNELS, names
    return names


def wait_for_finding(tap, token=None, timeout=15):
    """The first N+1 finding on show -> channel that tap reports, polling /api/findings."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = helpers.admin_json(tap.admin_url + "/api/findings", token=token)
        for f in last.get("findings", []):
            if ((f.get("parent") or {}).get("collection") == "show"
                    and f.get("children", {}).get("collection") == "channel"):
                return f
        time.sleep(0.1)
    raise AssertionError("no show -> channel finding within %ss: %r" % (timeout, last))

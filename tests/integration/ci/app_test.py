"""A test suite in miniature, run by the CI-mode tests as `mongotap run -- python3 app_test.py MODE`:
it renders the show listing the way a page would (mongoengine, through $MONGODB_URI) and asserts
that it rendered. The data is seeded by the test beforehand, straight into the server.

  lazy    show.channel.name per show: the lazy-reference N+1 on channel
  fixed   the same listing with select_related(): no N+1
  two     lazy on channel and on host: two N+1 patterns
  fail    the lazy listing, then a failing assertion (exit status 5)
  tagged  the lazy loop by hand with pymongo, every command tagged comment "mongotap:ignore-..."
  env     writes the connection variables it was given as JSON to $CI_OUT, connects to nothing
  wait    connects, starts a grandchild, prints "ready <pid> <grandchild pid>" and waits for a
          signal; on SIGINT prints "got SIGINT" and dies of it (CI_GRANDCHILD=stubborn: the
          grandchild ignores SIGINT)"""

import json
import os
import signal
import subprocess
import sys
import time

from mongoengine import Document, ReferenceField, StringField, connect

N_SHOWS = 12


class Channel(Document):
    name = StringField(required=True)
    meta = {"collection": "channel", "auto_create_index": False}


class Person(Document):
    name = StringField(required=True)
    meta = {"collection": "person", "auto_create_index": False}


class Show(Document):
    title = StringField(required=True)
    channel = ReferenceField(Channel)
    host = ReferenceField(Person)
    meta = {"collection": "show", "auto_create_index": False}


def render(shows, with_host=False):
    rows = []
    for show in shows:
        row = "%s on %s" % (show.title, show.channel.name)
        if with_host:
            row += " with %s" % show.host.name
        rows.append(row)
    assert len(rows) == N_SHOWS, rows
    return rows


def tagged(uri):
    import pymongo
    client = pymongo.MongoClient(uri)
    db = client.get_default_database()
    shows = list(db.show.find({}, comment="mongotap:ignore-listing"))
    names = [db.channel.find_one({"_id": s["channel"]}, comment="mongotap:ignore-listing")["name"]
             for s in shows]
    client.close()
    assert len(names) == N_SHOWS, names


def wait(uri):
    connect(host=uri)
    Show.objects.first()
    stubborn = os.environ.get("CI_GRANDCHILD") == "stubborn"
    code = ("import signal, sys, time\n"
            + ("signal.signal(signal.SIGINT, signal.SIG_IGN)\n" if stubborn else "")
            + "print('armed', flush=True)\n"
            + "time.sleep(600)\n")
    grandchild = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    # ready only once the grandchild's own signal disposition is in place
    assert grandchild.stdout.readline() == b"armed\n"

    def on_sigint(signum, frame):
        print("got SIGINT", flush=True)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)

    signal.signal(signal.SIGINT, on_sigint)
    print("ready %d %d" % (os.getpid(), grandchild.pid), flush=True)
    while True:
        time.sleep(60)


def main():
    mode = sys.argv[1]
    uri = os.environ.get("MONGODB_URI", "")
    if mode == "env":
        with open(os.environ["CI_OUT"], "w") as f:
            json.dump({k: os.environ.get(k) for k in
                       ("MONGODB_URI", "MONGOTAP_URI", "MONGOTAP_ADMIN_URL", "DB_URL")}, f)
        return 0
    if mode == "tagged":
        tagged(uri)
        return 0
    if mode == "wait":
        wait(uri)
    connect(host=uri)
    if mode == "fixed":
        render(Show.objects.select_related())
    elif mode == "two":
        render(Show.objects, with_host=True)
    else:
        render(Show.objects)
    if mode == "fail":
        print("app_test: the page is missing its footer", file=sys.stderr)
        return 5
    return 0


if __name__ == "__main__":
    sys.exit(main())

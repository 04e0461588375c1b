"""A small Flask + mongoengine TV guide. The listing page `/` reads show.channel.name in the
template, which mongoengine resolves one channel query per show (1 + N queries);
`/?select_related=1` loads the channels up front with select_related() (1 + 1 queries).
`POST /watched` marks every show watched by the signed-in viewer the slow way: one save() per
show (N updates) and the viewer read again for every row (N identical queries);
`POST /watched?fixed=1` does it with one update and one viewer query.
Each response carries the count of MongoDB commands it took in X-Mongo-Commands (and the
finds and updates among them in X-Mongo-Finds, X-Mongo-Updates)."""

import os
import sys
import threading
import time

from flask import Flask, g, render_template, request
from mongoengine import connect, disconnect
from pymongo import monitoring

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from models import VIEWER, Show, Viewer  # noqa: E402

DEFAULT_URI = "mongodb://127.0.0.1:27018/tvguide?directConnection=true"


class CommandLog(monitoring.CommandListener):
    """Records the driver's commands (name, collection, ms) for the request that runs them."""

    def __init__(self):
        self._local = threading.local()

    def begin(self):
        self._local.commands = []

    def end(self):
        commands = getattr(self._local, "commands", None) or []
        self._local.commands = None
        return commands

    def started(self, event):
        pass

    def succeeded(self, event):
        commands = getattr(self._local, "commands", None)
        if commands is not None:
            commands.append((event.command_name, event.duration_micros / 1000.0))

    def failed(self, event):
        self.succeeded(event)


def create_app(uri=None):
    uri = uri or os.environ.get("MONGODB_URI", DEFAULT_URI)
    commands = CommandLog()
    disconnect()
    connect(host=uri, appname="tvguide", uuidRepresentation="standard",
            event_listeners=[commands])

    app = Flask(__name__)
    app.config["COMMAND_LOG"] = commands

    @app.before_request
    def start_counting():
        g.started = time.perf_counter()
        commands.begin()

    @app.after_request
    def report_count(response):
        done = commands.end()
        response.headers["X-Mongo-Commands"] = str(len(done))
        response.headers["X-Mongo-Finds"] = str(sum(1 for name, _ in done if name == "find"))
        response.headers["X-Mongo-Updates"] = str(sum(1 for name, _ in done if name == "update"))
        response.headers["X-Mongo-Time-Ms"] = "%.2f" % sum(ms for _, ms in done)
        response.headers["X-Request-Time-Ms"] = "%.2f" % ((time.perf_counter() - g.started) * 1000)
        return response

    @app.route("/")
    def listing():
        select_related = request.args.get("select_related") == "1"
        shows = Show.objects.order_by("start", "title")
        if select_related:
            shows = shows.select_related()
        return render_template("index.html", shows=shows, select_related=select_related)

    @app.route("/watched", methods=["POST"])
    def mark_all_watched():
        fixed = request.args.get("fixed") == "1"
        shows = list(Show.objects.order_by("start", "title").select_related())
        if fixed:
            # one update for every show, and the viewer loaded once for the whole page
            Show.objects(id__in=[show.id for show in shows]).update(set__watched=True)
            viewer = current_viewer()
            for show in shows:
                show.watched = True
            return render_template("watched.html", shows=shows, viewer=lambda: viewer,
                                   fixed=True)
        for show in shows:
            show.watched = True
            show.save()  # one update per show
        # the template asks current_viewer() for every row: one identical query each time
        return render_template("watched.html", shows=shows, viewer=current_viewer, fixed=False)

    return app


def current_viewer():
    """The signed-in viewer (the demo has one), read from the database on every call."""
    return Viewer.objects(username=VIEWER, active=True).first()


if __name__ == "__main__":
    create_app().run(host="127.0.0.1", port=int(os.environ.get("PORT", "5000")))

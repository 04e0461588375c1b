"""The TV guide's data: channels, the shows they air and the viewers who watch them.
Show.channel is a plain mongoengine ReferenceField, so reading show.channel.name loads each
channel on its own."""

from mongoengine import (BooleanField, DateTimeField, Document, IntField, ReferenceField,
                         StringField)

VIEWER = "viewer"  # the username of the one viewer the demo app signs in as


class Channel(Document):
    name = StringField(required=True)
    number = IntField(required=True)
    # no index creation: the guide's queries need none, and it keeps startup to plain CRUD
    meta = {"collection": "channel", "auto_create_index": False}


class Show(Document):
    title = StringField(required=True)
    start = DateTimeField(required=True)
    channel = ReferenceField(Channel, required=True)
    watched = BooleanField(default=False)
    meta = {"collection": "show", "auto_create_index": False}


class Viewer(Document):
    username = StringField(required=True)
    name = StringField(required=True)
    active = BooleanField(default=True)
    meta = {"collection": "viewer", "auto_create_index": False}

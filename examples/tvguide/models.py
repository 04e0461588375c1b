"""The TV guide's data: channels and the shows they air. Show.channel is a plain
mongoengine ReferenceField, so reading show.channel.name loads each channel on its own."""

from mongoengine import DateTimeField, Document, IntField, ReferenceField, StringField


class Channel(Document):
    name = StringField(required=True)
    number = IntField(required=True)
    # no index creation: the guide's queries need none, and it keeps startup to plain CRUD
    meta = {"collection": "channel", "auto_create_index": False}


class Show(Document):
    title = StringField(required=True)
    start = DateTimeField(required=True)
    channel = ReferenceField(Channel, required=True)
    meta = {"collection": "show", "auto_create_index": False}

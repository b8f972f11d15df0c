"""A realistic conversation sent by real clients through Synapse's client API.

Returns what was sent, so tests (and the quickstart) can compare the archive with it.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from tests.support.matrix_client import MatrixClient

PNG_1X1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082")


@dataclass
class Sent:
    room_id: str
    events: dict[str, str] = field(default_factory=dict)  # label -> event_id
    final_bodies: dict[str, str] = field(default_factory=dict)  # event_id -> body expected now
    redacted: set[str] = field(default_factory=set)
    media: dict[str, tuple[str, str]] = field(default_factory=dict)  # event_id -> (mxc, sha256)


def send_conversation(alice: MatrixClient, bob: MatrixClient, room_name: str) -> Sent:
    room = alice.create_room(name=room_name, invite=[bob.user_id])
    bob.join(room)
    sent = Sent(room)
    e = sent.events
    e["hello"] = alice.send_text(room, "Hello Bob, are we still on for Friday?")
    e["reply"] = bob.send_text(room, "Yes! 7pm at the usual place.", reply_to=e["hello"])
    e["emote"] = alice.send_text(room, "waves", msgtype="m.emote")
    e["notice"] = bob.send_text(room, "Reminder: bring the slides", msgtype="m.notice")
    e["thread_root"] = alice.send_text(room, "Thread: what should we order?")
    e["thread_reply"] = bob.send_text(room, "Pizza, obviously", thread_root=e["thread_root"])
    e["reaction"] = alice.react(room, e["reply"], "👍")
    e["typo"] = alice.send_text(room, "See you at 6pm")
    e["edit1"] = alice.edit(room, e["typo"], "See you at 7pm")
    e["edit2"] = alice.edit(room, e["typo"], "See you at 7pm sharp")
    e["oops"] = bob.send_text(room, "my password is hunter2")
    e["redaction"] = bob.redact(room, e["oops"], reason="posted a secret")
    e["location"] = alice.send(room, "m.room.message", {"msgtype": "m.location", "body": "Office",
                                                         "geo_uri": "geo:52.52,13.40"})
    e["poll"] = bob.send(room, "org.matrix.msc3381.poll.start", {"org.matrix.msc3381.poll.start": {
        "question": {"body": "Pizza or pasta?"}, "answers": [{"id": "a", "body": "Pizza"}]}, "body": "Pizza or pasta?"})
    e["custom"] = alice.send(room, "com.example.custom", {"anything": [1, 2, 3]})
    image_mxc = alice.upload(PNG_1X1, "image/png", "dot.png")
    e["image"] = alice.send(room, "m.room.message", {"msgtype": "m.image", "body": "dot.png", "url": image_mxc,
                                                     "info": {"mimetype": "image/png", "size": len(PNG_1X1), "w": 1, "h": 1}})
    doc = b"%PDF-1.4\n% sample agenda\n" * 40
    file_mxc = bob.upload(doc, "application/pdf", "agenda.pdf")
    e["file"] = bob.send(room, "m.room.message", {"msgtype": "m.file", "body": "agenda.pdf", "url": file_mxc,
                                                  "info": {"mimetype": "application/pdf", "size": len(doc)}})
    e["sticker"] = alice.send(room, "m.sticker", {"body": "cat", "url": image_mxc, "info": {"mimetype": "image/png"}})
    e["media_oops"] = bob.send(room, "m.room.message", {"msgtype": "m.image", "body": "wrong.png", "url": image_mxc})
    e["media_redaction"] = bob.redact(room, e["media_oops"])
    sent.final_bodies[e["typo"]] = "See you at 7pm sharp"
    sent.final_bodies[e["hello"]] = "Hello Bob, are we still on for Friday?"
    sent.redacted |= {e["oops"], e["media_oops"]}
    sha_png, sha_doc = hashlib.sha256(PNG_1X1).hexdigest(), hashlib.sha256(doc).hexdigest()
    sent.media = {e["image"]: (image_mxc, sha_png), e["file"]: (file_mxc, sha_doc), e["sticker"]: (image_mxc, sha_png)}
    return sent

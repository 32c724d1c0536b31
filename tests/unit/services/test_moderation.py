"""chat/services/moderation.py: what moderators' deletions tell the rooms."""

import pytest

from chat import events
from chat.models import Message, Room
from chat.services import moderation


@pytest.mark.django_db
def test_a_bulk_delete_is_announced_in_frames_of_bounded_size(monkeypatch):
    room = Room.objects.create(name="Bulk", slug="bulk")
    Message.objects.bulk_create(
        Message(room=room, seq=seq, nickname="spam", text="x") for seq in range(1, 2501)
    )
    sent = []
    monkeypatch.setattr(
        events, "room_send_sync", lambda room_id, frame, **kw: sent.append(frame)
    )
    moderation.messages_delete(messages=Message.objects.filter(room=room))
    assert [len(f["ids"]) for f in sent] == [1000, 1000, 500]
    ids = [i for f in sent for i in f["ids"]]
    assert ids == sorted(set(ids))
    assert not Message.objects.filter(room=room).exists()

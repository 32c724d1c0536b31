"""Moderation in the Django admin, and what connected clients see of it."""

import re

import pytest
from channels.db import database_sync_to_async
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth import get_user_model
from django.test import Client as HttpClient
from django.utils import timezone
from pytest_django.asserts import assertContains, assertInHTML, assertNotContains

from chat.models import Message, ModerationRecord, Room, Sanction
from tests.unit.factories import say, signed_in


def _admin_http_client():
    # No password: hashing one costs more than the rest of a test.
    user = get_user_model().objects.create_superuser("mod", "mod@example.com", None)
    client = HttpClient()
    client.force_login(user)
    return client


@pytest.fixture
def admin_client(db):
    return _admin_http_client()


@pytest.fixture
def rooms(db):
    test = Room.objects.create(name="Test", slug="test", topic="needle in a topic")
    for text in ("first", "second", "a needle here"):
        say(test, text, nickname="alice")
    say(Room.objects.get(slug="general"), "hello", nickname="bob")
    return test


def test_room_list_shows_message_counts_and_links(admin_client, rooms):
    response = admin_client.get("/admin/chat/room/")
    body = response.content.decode()
    assert response.status_code == 200
    # Rows are ordered by name: General (1 message), then Test (3).
    assert re.findall(r'class="field-message_count">(\d+)<', body) == ["1", "3"]
    assertInHTML('<td class="field-link"><a href="/rooms/test/">open</a></td>', body)
    assertInHTML('<td class="field-link"><a href="/rooms/general/">open</a></td>', body)


def test_room_search_finds_by_name_and_topic(admin_client, rooms):
    for query in ("tes", "needle"):
        response = admin_client.get("/admin/chat/room/", {"q": query})
        assertContains(response, f"/admin/chat/room/{rooms.pk}/change/")
        assertNotContains(response, "/rooms/general/")


def test_message_list_is_searchable_and_filterable_by_room(admin_client, rooms):
    found = admin_client.get("/admin/chat/message/", {"q": "needle"})
    assertContains(found, "a needle here")
    assertNotContains(found, "second")

    in_test = admin_client.get("/admin/chat/message/", {"room__id__exact": rooms.pk})
    assertContains(in_test, "3 messages")
    assertNotContains(in_test, "hello")
    # The filter offers every room.
    assertContains(in_test, f"?room__id__exact={rooms.pk}")
    general = Room.objects.get(slug="general")
    assertContains(in_test, f"?room__id__exact={general.pk}")


def test_message_text_is_shown_as_text(admin_client, rooms):
    say(rooms, "<script>alert(1)</script> & <b>", nickname="<i>mallory</i>")
    response = admin_client.get("/admin/chat/message/")
    assertContains(response, "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;")
    assertContains(response, "&lt;i&gt;mallory&lt;/i&gt;")
    assertNotContains(response, "<script>alert(1)")
    assertNotContains(response, "&amp;lt;")


def test_messages_cannot_be_added_in_the_admin(admin_client, rooms):
    assert admin_client.get("/admin/chat/message/add/").status_code == 403


# Live effects on connected clients ----------------------------------------------


# The marker (not only the fixtures) keeps the database open until the hub's
# clean-up at the end of the test has run.
LIVE = pytest.mark.django_db(transaction=True)


@LIVE
async def test_bulk_delete_in_the_admin_removes_messages_live(joined):
    alice = await joined("alice")
    bob = await joined("bob")
    ids = []
    for text in ("keep", "spam 1", "spam 2"):
        await alice.say(text)
        ids.append((await bob.expect("message", text=text))["id"])
    spam = ids[1:]
    admin = await database_sync_to_async(_admin_http_client)()
    changelist = "/admin/chat/message/"
    post = database_sync_to_async(admin.post)
    # The admin's own two steps: choose the action, then confirm it.
    confirm = await post(
        changelist, {"action": "delete_selected", ACTION_CHECKBOX_NAME: spam}
    )
    assertContains(confirm, "Are you sure you want to delete the selected messages?")
    done = await post(
        changelist,
        {"action": "delete_selected", ACTION_CHECKBOX_NAME: spam, "post": "yes"},
    )
    assert done.status_code == 302

    deleted = set()
    while deleted != set(spam):
        frame = await bob.expect("deleted")
        deleted.update(frame["ids"])
        assert deleted <= set(spam)
    remaining = await database_sync_to_async(
        lambda: list(Message.objects.values_list("text", flat=True))
    )()
    assert remaining == ["keep"]


@LIVE
async def test_archiving_in_the_admin_closes_the_room_for_clients(joined, general):
    alice = await joined("alice")
    admin = await database_sync_to_async(_admin_http_client)()
    now = timezone.localtime(general.created)
    response = await database_sync_to_async(admin.post)(
        f"/admin/chat/room/{general.pk}/change/",
        {
            "name": general.name,
            "slug": general.slug,
            "topic": general.topic,
            "archived": "on",
            "created_0": now.strftime("%Y-%m-%d"),
            "created_1": now.strftime("%H:%M:%S"),
            "slow_mode_seconds": "0",
        },
    )
    assert response.status_code == 302
    error = await alice.expect("error")
    assert error["code"] == "room_archived"
    assert (await alice.ws.receive_output(timeout=2))["code"] == 4410
    assert (await database_sync_to_async(Room.objects.get)(pk=general.pk)).archived


def _room_form(room, **changes):
    created = timezone.localtime(room.created)
    form = {
        "name": room.name,
        "slug": room.slug,
        "topic": room.topic,
        "slow_mode_seconds": str(room.slow_mode_seconds),
        "created_0": created.strftime("%Y-%m-%d"),
        "created_1": created.strftime("%H:%M:%S"),
    }
    form.update(changes)
    return form


@LIVE
async def test_a_rename_and_new_rules_reach_open_pages_and_hold_at_once(
    joined, general
):
    alice = await joined("alice")
    admin = await database_sync_to_async(_admin_http_client)()
    response = await database_sync_to_async(admin.post)(
        f"/admin/chat/room/{general.pk}/change/",
        _room_form(general, name="Lounge", topic="Be kind.", slow_mode_seconds="60"),
    )
    assert response.status_code == 302
    assert (await alice.expect("room"))["room"] == {
        "slug": "general",
        "name": "Lounge",
        "topic": "Be kind.",
        "slow_mode_seconds": 60,
        "members_only": False,
    }
    await alice.say("one")
    await alice.expect("message", text="one")
    await alice.say("two")
    assert (await alice.expect("error"))["code"] == "slow_mode"


def _mute(nickname):
    return Sanction.objects.create(
        kind=Sanction.Kind.MUTE,
        room=Room.objects.get(slug="general"),
        nickname=nickname,
        visitor="ignored",
        user=get_user_model().objects.get(username=nickname),
    )


@LIVE
async def test_lifting_a_mute_in_the_admin_lets_them_post_at_once(make_client):
    session = await database_sync_to_async(signed_in)("Eve")
    eve = await make_client(session_key=session)
    await eve.join("Eve")
    sanction = await database_sync_to_async(_mute)("Eve")
    await eve.say("hello?")
    assert (await eve.expect("error"))["code"] == "muted"
    admin = await database_sync_to_async(_admin_http_client)()
    response = await database_sync_to_async(admin.post)(
        "/admin/chat/sanction/",
        {"action": "lift", ACTION_CHECKBOX_NAME: [sanction.pk]},
    )
    assert response.status_code == 302
    await eve.say("hello!")
    assert (await eve.expect("message"))["text"] == "hello!"

    def log():
        return list(ModerationRecord.objects.values_list("action", "nickname"))

    assert await database_sync_to_async(log)() == [("lift", "Eve")]


def test_the_moderation_log_is_searchable_and_read_only(admin_client, rooms):
    ModerationRecord.objects.create(
        moderator_name="mod", action="ban", room=rooms, nickname="spammer",
        reason="links to scams",
    )  # fmt: skip
    ModerationRecord.objects.create(
        moderator_name="mod", action="mute", room=rooms, nickname="loud"
    )
    found = admin_client.get("/admin/chat/moderationrecord/", {"q": "scams"})
    assertContains(found, "spammer")
    assertNotContains(found, "loud")
    record = ModerationRecord.objects.get(nickname="loud")
    page = admin_client.get(f"/admin/chat/moderationrecord/{record.pk}/change/")
    assert page.status_code == 200
    assertNotContains(page, 'name="_save"')
    assert admin_client.get("/admin/chat/moderationrecord/add/").status_code == 403

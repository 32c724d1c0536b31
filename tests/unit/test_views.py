"""The pages and the JSON history, as a browser (or a script) gets them."""

import json
import re

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from pytest_django.asserts import assertContains, assertInHTML, assertNotContains

from chat import protocol
from chat.models import Message, Room
from chat.services import messages
from tests.unit.factories import instance, join, say

pytestmark = pytest.mark.django_db

NASTY = "<script>alert(1)</script> & <b>"
NASTY_ONCE = "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;"


@pytest.fixture
def room():
    instance("here")
    return Room.objects.create(name="Test", slug="test", topic="Testing things")


def test_a_fresh_install_has_the_general_room():
    # Made by a migration: a plain (non-transactional) test sees migration data.
    general = Room.objects.get(slug="general")
    assert (general.name, general.archived) == ("General", False)


def test_lobby_lists_open_rooms_with_topic_and_who_is_online(client, room):
    instance("there")
    instance("dead", alive=False)
    join(room, "alice")
    join(room, "bob", on="there")
    join(room, "ghost", on="dead")
    Room.objects.create(name="Attic", slug="attic", topic="Dusty", archived=True)

    response = client.get("/")

    assert response.status_code == 200
    assertInHTML(
        '<li class="room-card"><a href="/rooms/test/" class="room-name">Test</a>'
        '<p class="topic">Testing things</p><p class="online">2 online</p></li>',
        response.content.decode(),
    )
    assertInHTML(
        '<li class="room-card"><a href="/rooms/general/" class="room-name">'
        'General</a><p class="topic">Anything goes.</p>'
        '<p class="online">0 online</p></li>',
        response.content.decode(),
    )
    assertNotContains(response, "Attic")
    assertNotContains(response, "/rooms/attic/")


def test_lobby_without_open_rooms_says_so(client):
    Room.objects.update(archived=True)
    assertContains(client.get("/"), "There are no open rooms yet.")


def test_room_page_gives_a_visitor_cookie_once(client, room):
    first = client.get("/rooms/test/")
    assert first.status_code == 200
    assertInHTML('<h1 id="room-name">Test</h1>', first.content.decode())
    visitor = first.cookies["visitor"]
    assert visitor.value
    assert visitor["httponly"]
    assert visitor["samesite"] == "Lax"
    assert "sessionid" not in first.cookies
    # The same visitor keeps the same cookie: no new one on the next visit.
    second = client.get("/rooms/test/")
    assert second.status_code == 200
    assert "visitor" not in second.cookies
    assert client.cookies["visitor"].value == visitor.value


def test_unknown_room_is_a_proper_404_page(client):
    assert settings.DEBUG is False
    for path in ("/rooms/nowhere/", "/rooms/not a slug/", "/nothing-here"):
        response = client.get(path)
        assert response.status_code == 404
        assert "404.html" in [t.name for t in response.templates]
        assertContains(response, "There is nothing at this address.", status_code=404)
        assertContains(response, 'href="/"', status_code=404)


def test_archived_room_page_says_it_is_archived(client):
    Room.objects.create(name="Attic", slug="attic", archived=True)
    response = client.get("/rooms/attic/")
    assertContains(response, "This room is archived.")
    assert config_of(response)["archived"] is True
    open_page = client.get("/rooms/general/")
    assertNotContains(open_page, "This room is archived.")


def config_of(response):
    found = re.search(
        r'<script id="chat-config" type="application/json">(.*?)</script>',
        response.content.decode(),
        re.DOTALL,
    )
    assert found, "the page has no chat-config script"
    return json.loads(found.group(1))


def test_names_and_topics_are_shown_as_typed_escaped_once(client):
    Room.objects.create(name=NASTY, slug="nasty", topic=NASTY)
    for path in ("/", "/rooms/nasty/"):
        response = client.get(path)
        body = response.content.decode()
        assert response.status_code == 200
        assert body.count(NASTY_ONCE) >= 2, path  # the name and the topic
        assert "<script>alert(1)" not in body
        assert "&amp;lt;" not in body
        assert "&amp;amp;" not in body


def test_config_json_cannot_close_its_script_element(client):
    # Usernames from the admin's form are restricted; the model itself is not.
    user = get_user_model().objects.create_user("</script><b>x&y")
    client.force_login(user)
    response = client.get("/rooms/general/")
    body = response.content.decode()
    assert "</script><b>x" not in body
    config = config_of(response)
    # The HTTP transport's POSTs carry the page's CSRF token.
    assert len(config.pop("csrfToken")) == 64  # masked, as get_token() gives it
    assert config == {
        "room": "general",
        "nickname": "</script><b>x&y",
        "archived": False,
        "maxMessageLength": settings.CHAT_MAX_MESSAGE_LENGTH,
        "nicknameMaxLength": 32,
    }


# The JSON history -------------------------------------------------------------


def page(client, **params):
    response = client.get("/rooms/test/messages", params)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    data = response.json()
    return [m["seq"] for m in data["messages"]], data["through"], data["has_more"]


def test_history_message_fields(client, room):
    message = say(room, "<b>hi</b>", nickname="alice", client_id="c-1")
    assert client.get("/rooms/test/messages").json() == {
        "messages": [
            {
                "type": "message",
                "id": message.pk,
                "seq": 1,
                "room": "test",
                "nickname": "alice",
                "text": "<b>hi</b>",
                "ts": message.created.isoformat().replace("+00:00", "Z"),
                "client_id": "c-1",
                "author": protocol.author_of(room.pk, message.visitor),
                "edited": None,
            }
        ],
        "through": 1,
        "has_more": False,
    }


def test_history_pages_by_seq_both_ways(client, room):
    for n in range(5):
        say(room, f"m{n}")
    assert page(client) == ([1, 2, 3, 4, 5], 5, False)
    assert page(client, limit=2) == ([4, 5], 5, True)
    assert page(client, after=0, limit=2) == ([1, 2], 2, True)
    assert page(client, after=2, limit=2) == ([3, 4], 4, True)
    assert page(client, after=4, limit=2) == ([5], 5, False)
    assert page(client, before=4, limit=2) == ([2, 3], 3, True)
    assert page(client, before=2, limit=2) == ([1], 1, False)


def test_history_through_moves_past_deleted_messages(client, room):
    for n in range(5):
        say(room, f"m{n}")
    Message.objects.filter(room=room, seq__in=[4, 5]).delete()
    assert page(client, after=3) == ([], 5, False)
    # A reader at 5 is done; asking again gives the same answer.
    assert page(client, after=5) == ([], 5, False)


def test_history_limit_is_capped_at_200(client, room):
    Message.objects.bulk_create(
        Message(room=room, seq=seq, nickname="bulk", text=str(seq))
        for seq in range(1, 206)
    )
    Room.objects.filter(pk=room.pk).update(last_seq=205)
    seqs, through, has_more = page(client, after=0, limit=10_000)
    assert (len(seqs), seqs[-1], through, has_more) == (200, 200, 200, True)
    assert page(client, after=200, limit=10_000) == (
        [201, 202, 203, 204, 205],
        205,
        False,
    )


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("after=-1", "after"),
        ("after=abc", "after"),
        ("after=1.5", "after"),
        ("after=%D9%A3", "after"),  # an Arabic-Indic digit
        ("before=1e3", "before"),
        ("after=1000000000000000000", "after"),  # 19 digits
        ("before=99999999999999999999999999999", "before"),
        ("limit=0", "limit"),
        ("limit=-5", "limit"),
        ("after=1&before=3", "after or before"),
    ],
)
def test_history_bad_parameters_get_a_json_400(client, room, query, named):
    response = client.get(f"/rooms/test/messages?{query}")
    assert response.status_code == 400
    data = response.json()
    assert data["error"] == "invalid_parameter"
    assert named in data["message"]


def test_history_of_an_unknown_room_is_a_json_404(client):
    response = client.get("/rooms/nowhere/messages?after=0")
    assert response.status_code == 404
    assert response.json()["error"] == "room_not_found"


def test_history_of_an_archived_room_stays_readable(client, room):
    say(room, "kept")
    Room.objects.filter(pk=room.pk).update(archived=True)
    assert page(client, after=0) == ([1], 1, False)


def test_history_keeps_edits_and_deleted_messages_in_their_place(client, room):
    first = say(room, "helo", visitor="v1")
    second = say(room, "oops", visitor="v1")
    say(room, "third", visitor="v2")
    messages.message_edit(
        room_id=room.pk, message_id=first.pk, visitor="v1", user_id=None, text="hello"
    )
    messages.message_delete(
        room_id=room.pk, message_id=second.pk, visitor="v1", user_id=None
    )
    page = client.get("/rooms/test/messages").json()
    shown = [
        (m["seq"], m["text"], bool(m["edited"]), m.get("deleted"))
        for m in page["messages"]
    ]
    assert shown == [
        (1, "hello", True, None),
        (2, "", False, True),
        (3, "third", False, None),
    ]

"""
The protocol as the room page gets it (chat.protocol.client_config, handed over
as JSON by the room view), and the page's modules (static/chat/*.js) taking
every frame type, code, limit and address from it instead of restating them.
"""

import json
import re
from pathlib import Path

import pytest
from django.urls import resolve

from chat import protocol, views
from chat.consumers import RoomConsumer
from chat.routing import websocket_urlpatterns

STATIC = Path(__file__).resolve().parents[2] / "static" / "chat"
SCRIPTS = sorted(STATIC.glob("*.js"))


def config(slug="general"):
    return protocol.client_config(
        room_slug=slug, history_page_max=views.HISTORY_PAGE_MAX
    )


def sources():
    assert SCRIPTS, f"no scripts in {STATIC}"
    return {path.name: path.read_text() for path in SCRIPTS}


# What the page is given ---------------------------------------------------------


def test_every_frame_type_and_code_is_given_by_name():
    given = config()
    assert set(given["frames"].values()) == {
        *protocol.CLIENT_TYPES,
        *protocol.SERVER_TYPES,
    }
    assert given["frames"]["STOP_TYPING"] == protocol.STOP_TYPING
    assert set(given["errors"]["codes"].values()) == set(protocol.ERROR_CODES)
    assert given["errors"]["codes"]["RATE_LIMITED"] == protocol.RATE_LIMITED
    # A new close code has to be given to the page too.
    assert sorted(given["close"]["codes"].values()) == sorted(protocol.CLOSE_CODES)
    assert given["close"]["codes"]["ROOM_ARCHIVED"] == protocol.CLOSE_ROOM_ARCHIVED


def test_what_the_page_does_after_each_code_is_given_with_it():
    given = config()
    codes = set(protocol.ERROR_CODES)
    assert set(given["errors"]["retry"]) == {
        protocol.UNAVAILABLE,
        protocol.RATE_LIMITED,
        protocol.NOT_JOINED,
    }
    assert set(given["errors"]["nickname"]) == {
        protocol.INVALID_NICKNAME,
        protocol.NICKNAME_TAKEN,
    }
    assert set(given["errors"]["final"]) == {
        protocol.ROOM_NOT_FOUND,
        protocol.ROOM_ARCHIVED,
        protocol.KICKED,
        protocol.BANNED,
    }
    assert set(given["errors"]["held"]) == {protocol.MUTED, protocol.SLOW_MODE}
    for kind in ("retry", "nickname", "final", "held"):
        assert set(given["errors"][kind]) <= codes, kind
    assert given["close"]["final"] == list(protocol.FINAL_CLOSE_CODES)
    assert not set(given["close"]["final"]) & set(given["close"]["try_later"])
    assert set(given["close"]["try_later"]) <= set(protocol.CLOSE_CODES)


def test_the_limits_follow_the_settings(settings):
    settings.CHAT_MAX_MESSAGE_LENGTH = 123
    settings.CHAT_MAX_FRAME_BYTES = 4567
    settings.CHAT_HISTORY_LIMIT = 17
    assert config()["limits"] == {
        "max_message_length": 123,
        "max_frame_bytes": 4567,
        "nickname_max_length": protocol.NICKNAME_MAX_LENGTH,
        "client_id_max_length": protocol.CLIENT_ID_MAX_LENGTH,
        "history_page": 17,
        "history_page_max": views.HISTORY_PAGE_MAX,
        "edit_seconds": settings.CHAT_EDIT_WINDOW_SECONDS,
        "reason_max_length": protocol.REASON_MAX_LENGTH,
        "sanction_max_seconds": protocol.SANCTION_MAX_SECONDS,
    }


def test_the_addresses_are_the_rooms_history_and_socket_routes():
    urls = config("back-room_2")["urls"]
    history = resolve(urls["history"])
    assert (history.func, history.kwargs) == (views.history, {"slug": "back-room_2"})
    # Channels' routes take the path without its leading slash.
    assert urls["socket"].startswith("/")
    route = websocket_urlpatterns[0]
    match = route.pattern.match(urls["socket"][1:])
    assert match, urls["socket"]
    assert match[2] == {"slug": "back-room_2"}
    assert route.callback.consumer_class is RoomConsumer


def test_the_config_is_plain_json():
    given = config()
    assert json.loads(json.dumps(given)) == given


@pytest.mark.django_db
def test_the_room_page_carries_it_and_follows_a_changed_setting(client, settings):
    settings.CHAT_MAX_MESSAGE_LENGTH = 77
    html = client.get("/rooms/general/").content.decode()
    found = re.search(
        r'<script id="chat-protocol" type="application/json">(.*?)</script>',
        html,
        re.DOTALL,
    )
    assert found, "the page has no chat-protocol script"
    assert json.loads(found[1]) == config("general")
    assert json.loads(found[1])["limits"]["max_message_length"] == 77
    assert re.search(r'<input id="message"[^>]*maxlength="77"', html)
    assert re.search(r'<script type="module" src="[^"]*/chat/main\.[^"]*js"', html)


# What the page's modules restate: nothing -----------------------------------------


def test_the_scripts_write_no_close_code_down():
    for name, source in sources().items():
        for code in protocol.CLOSE_CODES:
            assert not re.search(rf"(?<![\w.]){code}(?![\w.])", source), (name, code)


def test_the_scripts_write_no_error_code_down():
    for name, source in sources().items():
        literals = set(re.findall(r"""["'`]([a-z_]+)["'`]""", source))
        assert not literals & set(protocol.ERROR_CODES), name


def test_the_scripts_write_no_frame_type_down():
    names = "|".join(sorted({*protocol.CLIENT_TYPES, *protocol.SERVER_TYPES}))
    quoted = rf"""["'`](?:{names})["'`]"""
    for name, source in sources().items():
        # {type: "ping"}, frame.type === "pong", handlers["welcome"]
        assert not re.search(rf"\btype\s*(?::|[!=]==?)\s*{quoted}", source), name
        assert not re.search(rf"\[\s*{quoted}\s*\]", source), name
        # A handler table keyed by the types themselves: { welcome(frame) {...} }
        assert not re.search(
            rf"^\s*[\"']?(?:{names})[\"']?\s*(?:\(\s*frame|:)", source, re.M
        ), name


def test_the_scripts_write_no_limit_or_address_down():
    for name, source in sources().items():
        assert not re.search(r"\blimit\s*[:=]\s*\d", source), name
        assert not re.search(r"\blength\s*[<>]=?\s*\d", source), name
        assert not re.search(r"""["'`/]ws/|/rooms/|/messages\b""", source), name


def test_every_name_the_scripts_take_from_the_config_is_given():
    given = config()
    used = set()
    for source in sources().values():
        used |= set(
            re.findall(
                r"(?<![\w.])(frames|errors|close|limits|urls|fallback)((?:\.\w+)+)",
                source,
            )
        )
    assert len(used) > 10
    for group, path in used:
        value = given[group]
        for key in path.lstrip(".").split("."):
            # A method of a list of codes (errors.retry.includes).
            if isinstance(value, list):
                assert key in ("includes", "indexOf", "length"), (group, path)
                break
            assert key in value, f"{group}{path} is not in the page's config"
            value = value[key]


def test_only_config_js_reads_the_servers_json():
    for name, source in sources().items():
        reads = "chat-protocol" in source or "chat-config" in source
        assert reads == (name == "config.js"), name

"""Nicknames: what may be one (chat/nicknames.py), and which of them are the same."""

import threading
import unicodedata
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.contrib.auth.models import AnonymousUser
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from chat import nicknames, protocol
from chat.models import Member, RegisteredName, Room
from chat.nicknames import skeleton
from chat.protocol import NICKNAME_MAX_LENGTH, ProtocolError
from chat.services import presence
from tests.unit.factories import instance, join

ADMIN_LOOK_ALIKES = [
    "\u0430dmin",  # Cyrillic a
    "ADM\u0130N",  # İ, dotted capital I
    "\U0001d41a\U0001d41d\U0001d426\U0001d422\U0001d427",  # mathematical bold
    "\uff41\uff44\uff4d\uff49\uff4e",  # full-width
]

INVISIBLE = {
    "combining grapheme joiner": "\u034f",
    "variation selector 16": "\ufe0f",
    "variation selector 17": "\U000e0100",
    "variation selector 256": "\U000e01ef",
    "Hangul filler": "\u3164",
    "Hangul choseong filler": "\u115f",
    "Hangul jungseong filler": "\u1160",
    "half-width Hangul filler": "\uffa0",
    "braille blank": "\u2800",
    "Mongolian free variation selector": "\u180b",
    "Khmer inherent vowel": "\u17b4",
}

REAL_NAMES = ["Zoë", "José", "Łukasz", "张伟", "محمد", "Ἀθηνᾶ", "Nguyễn"]


def refusal(nickname):
    with pytest.raises(ProtocolError) as caught:
        protocol.clean_nickname(nickname)
    assert caught.value.code == protocol.INVALID_NICKNAME
    return caught.value.message


# What a nickname may be -------------------------------------------------------


@pytest.mark.parametrize("char", INVISIBLE.values(), ids=INVISIBLE.keys())
def test_invisible_characters_are_refused_anywhere_in_a_nickname(char):
    for nickname in (f"ad{char}min", f"admin{char}", char, char * 3):
        assert "invisible" in refusal(nickname)


def test_every_variation_selector_and_hangul_filler_is_refused():
    # Found by their names in the UCD, not from the module's own table.
    named = [
        chr(code)
        for code in range(0x110000)
        if "VARIATION SELECTOR" in unicodedata.name(chr(code), "")
        or (
            "HANGUL" in unicodedata.name(chr(code), "")
            and "FILLER" in unicodedata.name(chr(code), "")
        )
    ]
    assert len(named) == 4 + 4 + 16 + 240  # fillers, Mongolian, FE00-, E0100-
    accepted = []
    for char in named:
        try:
            protocol.clean_nickname(f"a{char}b")
            accepted.append(char)
        except ProtocolError:
            pass
    assert accepted == []


def test_line_and_paragraph_separators_are_refused():
    for nickname in ("al\u2028ice", "al\u2029ice"):
        assert "control" in refusal(nickname)


@pytest.mark.parametrize(
    ("raw", "kept"),
    [
        ("\uff41\uff44\uff4d\uff49\uff4e", "admin"),
        ("\U0001d41a\U0001d41d\U0001d426\U0001d422\U0001d427", "admin"),
        ("E\u0301mile", "\u00c9mile"),
        ("\ufb01ona", "fiona"),  # the fi ligature
        ("bob\u2003smith", "bob smith"),  # an em space
    ],
)
def test_a_nickname_is_kept_in_nfkc(raw, kept):
    assert protocol.clean_nickname(raw) == kept


def test_the_length_limit_counts_characters_after_normalisation():
    assert protocol.clean_nickname("\uff41" * NICKNAME_MAX_LENGTH) == "a" * 32
    # U+FDFA, one ligature of 18 characters.
    assert "at most" in refusal("\ufdfa\ufdfa")


@pytest.mark.parametrize("name", REAL_NAMES)
def test_real_names_are_kept_as_typed(name):
    assert protocol.clean_nickname(name) == name
    # Case is folded in every script that has it, not in ASCII only.
    assert skeleton(name.upper()) == skeleton(name.lower()) == skeleton(name)


# When two nicknames are the same ----------------------------------------------


@pytest.mark.parametrize("look_alike", [*ADMIN_LOOK_ALIKES, "ADMIN", "Admin"])
def test_look_alikes_of_admin_share_its_skeleton(look_alike):
    assert skeleton(look_alike) == skeleton("admin")


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("straße", "strasse"),  # case folding
        ("STRASSE", "straße"),
        ("\u00c9", "E\u0301"),  # composed and decomposed
        ("émile", "Émile"),
        ("b0b", "BOB"),  # 0 and O, then folded
        ("\uff50\uff41\uff59\uff50\uff41\uff4c", "paypal"),  # full-width
        ("\u0440\u0430\u0443\u0440\u0430l", "paypal"),  # Cyrillic er, a, u
    ],
)
def test_look_alikes_share_a_skeleton(one, other):
    assert skeleton(one) == skeleton(other)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("alice", "alicia"),
        ("Zoë", "Zoe"),  # an accent is not a look-alike
        ("José", "Jose"),
        ("محمد", "أحمد"),
        ("张伟", "张三"),
        ("Anna", "Hanna"),
    ],
)
def test_different_names_have_different_skeletons(one, other):
    assert skeleton(one) != skeleton(other)


def test_the_prototypes_are_tr39s():
    prototypes = nicknames._prototypes()
    assert prototypes["\u0430"] == "a"  # Cyrillic a
    assert prototypes["m"] == "rn"
    assert prototypes["0"] == "O"
    assert prototypes["\u0131"] == "i"  # dotless i
    # A lone pair, the direction as in confusables.txt: DEHI -> TIPEHA.
    assert prototypes["\u05ad"] == "\u0596"
    assert "\u0596" not in prototypes
    # In TR39 a prototype maps no further.
    assert [p for p in prototypes.values() if any(c in prototypes for c in p)] == []
    assert len(prototypes) > 6000


def test_every_skeleton_is_settled_and_fits_the_column():
    limit = Member._meta.get_field("skeleton").max_length
    longest = 0
    for code in range(0x110000):
        char = chr(code)
        if unicodedata.category(char) in ("Cn", "Cs", "Co"):
            continue
        own = skeleton(char)
        # Folding and mapping settled within the rounds allowed: a skeleton's
        # skeleton is itself.
        assert nicknames._fold_and_map(own) == own, hex(code)
        if unicodedata.normalize("NFKC", char) == char:
            longest = max(longest, len(own))
    assert longest * NICKNAME_MAX_LENGTH <= limit
    assert len(skeleton("\uaf66" * NICKNAME_MAX_LENGTH)) <= limit


# Joining a room ---------------------------------------------------------------


@pytest.fixture
def room(db):
    instance("here")
    return Room.objects.create(name="Test", slug="test")


def refused_join(room, nickname, **kwargs):
    with pytest.raises(ProtocolError) as caught:
        join(room, nickname, **kwargs)
    assert caught.value.code == protocol.NICKNAME_TAKEN
    return caught.value.message


def join_as(user, room, nickname, visitor):
    return presence.room_join(
        room_id=room.pk,
        nickname=nickname,
        visitor=visitor,
        user=user,
        connection_id=f"conn-{visitor}-{nickname}",
        instance="here",
    )


@pytest.mark.parametrize("look_alike", ADMIN_LOOK_ALIKES)
def test_a_look_alike_of_a_nickname_in_the_room_is_taken(room, look_alike):
    join(room, "admin")
    assert "admin is already in this room" in refused_join(room, look_alike)
    assert list(Member.objects.values_list("nickname", flat=True)) == ["admin"]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("\u00c9mile", "E\u0301mile"),  # É composed, then E + combining acute
        ("\u00c9mile", "\u00e9mile"),  # not folded by SQLite's lower()
        ("strasse", "straße"),
    ],
)
def test_same_name_spelled_otherwise_is_taken(room, first, second):
    join(room, first)
    assert first in refused_join(room, second)


def test_a_nickname_is_stored_normalised_with_its_skeleton(room):
    _conn, presence = join(room, "E\u0301mile")
    assert presence.nickname == "\u00c9mile"
    assert Member.objects.get().skeleton == skeleton("\u00c9mile")


def test_invisible_characters_are_refused_whoever_calls(room):
    with pytest.raises(ProtocolError) as caught:
        join(room, "admin\u3164")
    assert caught.value.code == protocol.INVALID_NICKNAME
    assert not Member.objects.exists()


def test_real_names_join_and_different_ones_join_beside_each_other(room):
    names = [*REAL_NAMES, "Zoe", "Jose", "أحمد", "alice", "alicia"]
    for name in names:
        _conn, presence = join(room, name)
        assert presence.nickname == name
    assert presence.participants == len(names)
    assert sorted(Member.objects.values_list("skeleton", flat=True)) == sorted(
        skeleton(name) for name in names
    )


# One visitor, one nickname per room -------------------------------------------


def test_a_visitor_holds_one_nickname_per_room(room):
    join(room, "alice", visitor="v1")
    message = refused_join(room, "bob", visitor="v1")
    assert "You are already in this room as alice" in message
    # A second tab with the same nickname (or a look-alike of it) is the same
    # person, counted once.
    _conn, presence = join(room, "ALICE", visitor="v1")
    assert (presence.nickname, presence.participants, presence.arrived) == (
        "alice",
        1,
        False,
    )
    # Another room is another matter.
    other = Room.objects.create(name="Other", slug="other")
    assert join(other, "bob", visitor="v1")[1].arrived


def test_one_session_cannot_hold_thirty_nicknames(room):
    join(room, "name0", visitor="v1")
    for n in range(1, 30):
        refused_join(room, f"name{n}", visitor="v1")
    assert list(Member.objects.values_list("nickname", flat=True)) == ["name0"]


def test_a_visitor_who_left_or_whose_server_died_may_take_another(room):
    tab, _presence = join(room, "alice", visitor="v1")
    refused_join(room, "bob", visitor="v1")
    presence.room_leave(connection_id=tab)
    assert join(room, "bob", visitor="v1")[1].arrived
    # Held only through a dead instance: a ghost, not the visitor being here.
    instance("dead", alive=False)
    join(room, "carol", visitor="v2", on="dead")
    assert join(room, "dave", visitor="v2")[1].arrived


# As in tests/unit/test_consumers.py: the database outlasts the hub, which the
# autouse fixture closes after the test.
@pytest.mark.django_db(transaction=True)
async def test_a_second_socket_of_the_session_keeps_to_its_nickname(
    make_client, session_key
):
    tab1 = await make_client(session_key=session_key)
    await tab1.join("carol")
    tab2 = await make_client(session_key=session_key)
    await tab2.send({"type": "join", "nickname": "dave", "last_seq": None})
    error = await tab2.expect("error")
    assert error["code"] == "nickname_taken"
    assert "You are already in this room as carol" in error["message"]
    welcome = await tab2.join("carol")
    assert (welcome["participants"], welcome["users"]) == (1, ["carol"])


def _join_in_thread(room_id, nickname, start):
    start.wait()
    try:
        presence.room_join(
            room_id=room_id,
            nickname=nickname,
            visitor="one-session",
            user=AnonymousUser(),
            connection_id=f"conn-{nickname}",
            instance="here",
        )
        return nickname
    except ProtocolError:
        return None
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True)
def test_many_sockets_of_one_session_joining_at_once_get_one_nickname():
    if connection.vendor == "sqlite":
        pytest.skip("concurrent writers need a server database (DATABASE_URL)")
    instance("here")
    room = Room.objects.create(name="Race", slug="race")
    for round_ in range(5):
        start = threading.Barrier(8)
        names = [f"r{round_}n{n}" for n in range(8)]
        with ThreadPoolExecutor(8) as pool:
            joined = [
                name
                for name in pool.map(_join_in_thread, [room.pk] * 8, names, [start] * 8)
                if name
            ]
        assert len(joined) == 1, joined
        Member.objects.filter(room=room).delete()


# The migration ----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_migration_fills_skeletons_and_registered_names():
    executor = MigrationExecutor(connection)
    before = [("chat", "0002_general_room")]
    latest = executor.loader.graph.leaf_nodes("chat")
    executor.migrate(before)
    old = executor.loader.project_state(
        before + executor.loader.graph.leaf_nodes("auth")
    ).apps
    Instance = old.get_model("chat", "Instance")
    OldRoom = old.get_model("chat", "Room")
    OldMember = old.get_model("chat", "Member")
    OldConnection = old.get_model("chat", "Connection")
    User = old.get_model("auth", "User")
    here = Instance.objects.create(name="here", heartbeat="2026-01-01T00:00:00Z")
    room = OldRoom.objects.create(name="Old", slug="old")
    held = {}
    for visitor, nickname in [("v1", "Émile"), ("v2", "admin"), ("v3", "\u0430dmin")]:
        held[nickname] = OldMember.objects.create(
            room=room, nickname=nickname, visitor=visitor
        )
        OldConnection.objects.create(
            id=f"c-{visitor}", member=held[nickname], instance=here
        )
    if connection.vendor == "sqlite":
        # SQLite's lower() let both in.
        OldMember.objects.create(room=room, nickname="émile", visitor="v4")
    admin = User.objects.create(username="admin")
    User.objects.create(username="ADM\u0130N")  # a look-alike, registered later
    carol = User.objects.create(username="carol")

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(latest)

    assert sorted(Member.objects.values_list("nickname", "skeleton")) == [
        ("admin", skeleton("admin")),
        ("Émile", skeleton("Émile")),
    ]
    assert sorted(RegisteredName.objects.values_list("skeleton", "user_id")) == [
        (skeleton("admin"), admin.pk),
        (skeleton("carol"), carol.pk),
    ]

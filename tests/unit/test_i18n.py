"""The site in the visitor's language: English, French, Swedish and Korean."""

import ast
import gettext
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import translation

from chat.models import Room
from tests.conftest import Client

LOCALE = Path(settings.BASE_DIR) / "locale"
TRANSLATED = ["fr", "sv", "ko"]
STRINGS = re.compile(r'<span data-key="([^"]+)">(.*?)</span>', re.DOTALL)
# Page strings that are the same words in a language as in English.
SAME = {
    "fr": {"seconds_short", "minutes_short", "hours_short", "days_short"},
    "sv": {"seconds_short", "minutes_short", "hours_short", "days_short"},
    "ko": set(),
}


@pytest.fixture(autouse=True)
def _english_after():
    """The test client's requests run on this thread, and LocaleMiddleware's
    choice stays active on it: the tests after these expect English."""
    yield
    translation.deactivate()


def _unquote(text):
    return ast.literal_eval(text)


def _entries(po):
    """The entries of a .po file: its fields (msgctxt, msgid, msgid_plural,
    msgstr, msgstr[0], ...) and whether it is marked fuzzy; the header left out."""
    entries, current, field = [], {}, None
    for line in [*po.read_text(encoding="utf-8").splitlines(), ""]:
        starts_entry = line.startswith(("#", "msgctxt ")) or not line
        if starts_entry and "msgstr" in " ".join(current):
            entries.append(current)
            current = {}
        if line.startswith("#,"):
            current["fuzzy"] = "fuzzy" in line
        elif line.startswith('"'):
            current[field] += _unquote(line)
        elif line and not line.startswith("#"):
            field, _space, rest = line.partition(" ")
            current[field] = _unquote(rest)
    return [e for e in entries if e.get("msgid")]


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_string_is_translated_and_compiled(language):
    po = LOCALE / language / "LC_MESSAGES" / "django.po"
    compiled = gettext.GNUTranslations(po.with_suffix(".mo").open("rb"))
    entries = _entries(po)
    assert len(entries) > 100
    for entry in entries:
        assert not entry.get("fuzzy"), entry
        forms = [v for k, v in entry.items() if k.startswith("msgstr")]
        assert forms and all(forms), entry
        context = entry.get("msgctxt")
        key = f"{context}\x04{entry['msgid']}" if context else entry["msgid"]
        if "msgid_plural" in entry:
            assert compiled.ngettext(key, entry["msgid_plural"], 1) != key
        else:
            # The .mo holds what the .po says: compiled after the last change.
            assert compiled.gettext(key) == entry["msgstr"], entry


def _page_strings(client, language):
    page = client.get("/rooms/general/", HTTP_ACCEPT_LANGUAGE=language)
    assert page.status_code == 200
    return page.content.decode(), dict(STRINGS.findall(page.content.decode()))


@pytest.mark.parametrize("language", TRANSLATED)
def test_the_room_page_speaks_the_browsers_language(client, db, language):
    Room.objects.get_or_create(slug="general", defaults={"name": "General"})
    _html, english = _page_strings(client, "en")
    html, translated = _page_strings(client, language)
    assert f'<html lang="{language}" dir="ltr">' in html
    assert translated.keys() == english.keys()
    untranslated = {
        key
        for key, text in translated.items()
        if text == english[key] and key not in SAME[language]
    }
    assert not untranslated


def test_the_language_chosen_on_the_page_is_kept(client, db):
    answer = client.post("/i18n/setlang/", {"language": "sv", "next": "/"})
    assert answer.status_code == 302
    lobby = client.get("/", HTTP_ACCEPT_LANGUAGE="fr")
    assert '<html lang="sv"' in lobby.content.decode()


def test_the_admin_speaks_it_too(client, db):
    login = client.get("/admin/login/", HTTP_ACCEPT_LANGUAGE="fr")
    # Django's own French for the admin's sign-in.
    assert "Nom d\N{RIGHT SINGLE QUOTATION MARK}utilisateur" in login.content.decode()


@pytest.mark.django_db(transaction=True)
async def test_a_sockets_errors_are_in_the_visitors_language(general):
    client = Client(forwarded_for=None)
    client.ws.scope["headers"].append((b"accept-language", b"sv-SE,sv;q=0.9"))
    assert (await client.connect())[0]
    try:
        await client.send({"type": "message", "text": "hej"})
        refused = await client.expect("error")
        assert refused["code"] == "not_joined"
        assert refused["message"] == _in("sv", "Send a join frame first.")
    finally:
        await client.close()


def _in(language, text):
    with translation.override(language):
        translated = translation.gettext(text)
    assert translated != text
    return translated

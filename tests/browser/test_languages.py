"""The page in each of its four languages: chosen from the browser's
Accept-Language or the switcher, with the language's plural forms."""

import pytest
from playwright.sync_api import expect

from .test_room_page import join, note

pytestmark = [pytest.mark.browser, pytest.mark.processes]

# What a reader sees in each language: the prompt, the greeting, the count
# alone and with a second person (French counts 0 and 1 as singular, Korean
# has one form), and the second person's arrival.
SEEN = {
    "en-GB": (
        "en",
        "What's your nickname?",
        "Welcome to {room}",
        "there's 1 participant",
        "there are 2 participants",
        "Bo joined",
    ),
    "fr-FR": (
        "fr",
        "Quel est votre pseudo ?",
        "Bienvenue dans le salon {room}",
        "il y a 1 participant",
        "il y a 2 participants",
        "Bo a rejoint le salon",
    ),
    "sv-SE": (
        "sv",
        "Vilket smeknamn vill du använda?",
        "Välkommen till {room}",
        "det finns 1 deltagare",
        "det finns 2 deltagare",
        "Bo gick med i rummet",
    ),
    "ko-KR": (
        "ko",
        "사용할 닉네임을 정해 주세요",
        "{room}에 오신 걸 환영해요",
        "참여자 1명",
        "참여자 2명",
        "Bo 님이 들어왔어요",
    ),
}


@pytest.mark.parametrize("locale", sorted(SEEN))
def test_the_room_speaks_the_browsers_language(pages, make_room, locale):
    lang, prompt, welcome, alone, two, arrived = SEEN[locale]
    slug = make_room(f"Words {lang}")
    page = pages.open(f"/rooms/{slug}/", locale=locale)
    expect(page.locator("html")).to_have_attribute("lang", lang)
    expect(page.get_by_role("dialog", name=prompt)).to_be_visible()
    join(page, "Ann")
    room_name = page.locator("#room-name").text_content()
    expect(note(page, welcome.format(room=room_name))).to_have_count(1)
    expect(note(page, alone)).to_have_count(1)
    other = pages.open(f"/rooms/{slug}/", locale=locale)
    join(other, "Bo")
    expect(note(page, arrived)).to_have_count(1)
    expect(note(page, two)).to_have_count(1)


def test_the_switcher_changes_the_language_and_keeps_it(pages, make_room):
    slug = make_room("Switch")
    page = pages.open(f"/rooms/{slug}/", locale="en-GB")
    join(page, "Ann")
    page.get_by_label("Language").select_option("sv")
    page.get_by_role("button", name="Change", exact=True).click()
    expect(page.locator("html")).to_have_attribute("lang", "sv")
    # Back in the room, in Swedish, under the remembered nickname.
    expect(page.get_by_role("button", name="Skicka")).to_be_visible()
    expect(page.locator("#users li")).to_have_text(["Ann"])
    page.goto(page.url.replace(f"/rooms/{slug}/", "/"))
    expect(page.locator("html")).to_have_attribute("lang", "sv")


@pytest.mark.parametrize(
    ("locale", "lang", "log_in"),
    [
        ("fr-FR", "fr", "Connexion"),
        ("sv-SE", "sv", "Logga in"),
        ("ko-KR", "ko", "로그인"),
    ],
)
def test_the_admin_speaks_the_same_language(pages, locale, lang, log_in):
    page = pages.open("/admin/login/", locale=locale)
    expect(page.locator("html")).to_have_attribute("lang", lang)
    expect(page.locator("input[type=submit]")).to_have_value(log_in)

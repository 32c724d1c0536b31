"""The page's themes and its nicknames' colours, in a real browser."""

import json
import re

import pytest
from playwright.sync_api import expect

from .test_room_page import Relay, join, message, say

pytestmark = [pytest.mark.browser, pytest.mark.processes]

# The WCAG contrast of an element's text on the page's background.
CONTRAST = """(element) => {
  const rgb = (css) => css.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const lum = ([r, g, b]) => [r, g, b]
    .map((v) => v / 255)
    .map((c) => (c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4))
    .reduce((sum, c, i) => sum + c * [0.2126, 0.7152, 0.0722][i], 0);
  const fg = lum(rgb(getComputedStyle(element).color));
  const bg = lum(rgb(getComputedStyle(document.body).backgroundColor));
  return (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
}"""
NAMES = [f"name{n}" for n in range(40)] + ["Eve", "mallory", "Zoë", "佐藤", "مرحبا"]


def background(page):
    return page.evaluate("getComputedStyle(document.body).backgroundColor")


def test_the_system_theme_is_followed_until_the_switch_chooses_and_kept(
    pages, make_room
):
    slug = make_room("Dark")
    page = pages.open(f"/rooms/{slug}/", color_scheme="dark")
    join(page, "owl")
    assert background(page) == "rgb(22, 24, 28)"
    switch = page.get_by_role("button", name="Dark theme")
    expect(switch).to_have_attribute("aria-pressed", "true")
    switch.click()
    expect(switch).to_have_attribute("aria-pressed", "false")
    assert background(page) == "rgb(255, 255, 255)"
    page.reload()
    # Chosen once, kept: light in spite of the system's dark.
    expect(page.get_by_role("button", name="Dark theme")).to_have_attribute(
        "aria-pressed", "false"
    )
    assert background(page) == "rgb(255, 255, 255)"


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_nickname_reads_at_4_5_to_1_in_both_themes(pages, make_room, scheme):
    slug = make_room(f"Colours {scheme}")
    page = pages.open(f"/rooms/{slug}/", color_scheme=scheme)
    relay = Relay(page)
    join(page, "painter")
    say(page, "hello")
    expect(message(page, "hello")).to_be_visible()
    # People arriving, as the server tells the page: each painted in the list.
    for n, name in enumerate(NAMES, start=2):
        frame = {"type": "joined", "nickname": name, "participants": n}
        relay.sockets[-1].send(json.dumps(frame))
    expect(page.locator("#users li")).to_have_count(len(NAMES) + 1)
    low = [
        (item.text_content(), round(ratio, 2))
        for item in page.locator("#users li").all()
        if (ratio := item.evaluate(CONTRAST)) < 4.5
    ]
    assert not low
    own = page.locator("#log li.message .nickname").first
    assert own.evaluate(CONTRAST) >= 4.5


def test_right_to_left_text_reads_right_to_left(pages, make_room):
    slug = make_room("Directions")
    page = pages.open(f"/rooms/{slug}/")
    join(page, "سامي")
    say(page, "مرحبا، كيف حالك؟")
    say(page, "hello, how are you?")
    direction = "el => getComputedStyle(el).direction"
    arabic = message(page, "مرحبا، كيف حالك؟")
    expect(arabic).not_to_have_class(re.compile(r"\bpending\b"))
    # The question mark ends the sentence on its left, where Arabic ends.
    assert arabic.locator(".text").evaluate(direction) == "rtl"
    # Read once confirmed: the pending line is replaced by the saved one, and a
    # detached element has no computed direction.
    english = message(page, "hello, how are you?")
    expect(english).not_to_have_class(re.compile(r"\bpending\b"))
    assert english.locator(".text").evaluate(direction) == "ltr"
    assert page.locator("#users li").first.evaluate(direction) == "rtl"
    # The composer follows what is typed into it.
    page.locator("#message").fill("שלום")
    assert page.locator("#message").evaluate(direction) == "rtl"

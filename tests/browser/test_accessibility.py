"""
axe-core's checks (the npm package, package.json) on the pages people see: no
serious or critical violation on the lobby, the nickname prompt and a room
with messages, in both themes, at a desktop's and a phone's width.
"""

from pathlib import Path

import pytest
from playwright.sync_api import expect

from .test_room_page import join, message, say

pytestmark = [pytest.mark.browser, pytest.mark.processes]

AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
SIZES = {
    "desktop": {"width": 1280, "height": 800},
    "phone": {"width": 390, "height": 844},
}


@pytest.fixture(scope="module")
def axe_source():
    if not AXE.exists():
        pytest.skip("axe-core is not installed (npm ci)")
    return AXE.read_text()


def violations(page, axe_source):
    """axe-core's serious and critical findings on the page as it is now, each
    with the elements it found them on."""
    # Evaluated, not added as a <script>: the page's CSP admits only its own.
    page.evaluate(axe_source)
    found = page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ["violations"]}))
            .violations
            .filter((v) => v.impact === "serious" || v.impact === "critical")
            .map((v) => `${v.id}: ` + v.nodes
                .map((n) => `${n.target.join(" ")} ${n.failureSummary}`)
                .join(", "))"""
    )
    return found


@pytest.fixture(params=["light", "dark"])
def scheme(request):
    return request.param


@pytest.fixture(params=sorted(SIZES))
def size(request):
    return SIZES[request.param]


def test_the_lobby(pages, make_room, axe_source, scheme, size):
    make_room("Lobby check")
    page = pages.open("/", color_scheme=scheme, viewport=size)
    expect(page.locator(".room-card").first).to_be_visible()
    assert violations(page, axe_source) == []


def test_the_nickname_prompt(pages, make_room, axe_source, scheme, size):
    slug = make_room("Prompt check", messages=3)
    page = pages.open(f"/rooms/{slug}/", color_scheme=scheme, viewport=size)
    expect(page.locator("#nickname")).to_be_focused()
    assert violations(page, axe_source) == []


def test_a_room_with_messages(pages, make_room, axe_source, scheme, size):
    slug = make_room("Room check", messages=5)
    page = pages.open(f"/rooms/{slug}/", color_scheme=scheme, viewport=size)
    join(page, "reader")
    say(page, "a message of my own")
    expect(message(page, "a message of my own")).to_be_visible()
    expect(page.locator("#log li.pending")).to_have_count(0)
    assert violations(page, axe_source) == []


def test_the_prompt_keeps_the_keyboard_until_it_is_answered(pages, make_room):
    slug = make_room("Focus check")
    page = pages.open(f"/rooms/{slug}/")
    field = page.locator("#nickname")
    expect(field).to_be_focused()
    inside = "() => document.getElementById('login').contains(document.activeElement)"
    # Round the dialog and past its last control: the page behind is inert.
    for _ in range(4):
        page.keyboard.press("Tab")
        assert page.evaluate(inside) or page.evaluate(
            "() => document.activeElement === document.body"
        )
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog", name="What's your nickname?")).to_be_visible()
    assert not page.get_by_role("textbox", name="Message").is_visible()

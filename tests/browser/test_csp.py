"""
The Content-Security-Policy in a real Chromium: the pages work under it and it
reports no violation, the chat's WebSocket and the admin included.
"""

import time

import pytest
from playwright.sync_api import expect

from .conftest import WAIT_MS, add_staff, sign_in
from .test_room_page import join, message, say

pytestmark = [pytest.mark.browser, pytest.mark.processes]

# Collected in the page before any of its own scripts run.
LISTEN = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__violations.push(`${e.violatedDirective} ${e.blockedURI}`);
});
"""


class Watched:
    """A browser context whose pages report console errors and CSP violations."""

    def __init__(self, browser, server):
        self.server = server
        self.context = browser.new_context()
        self.context.set_default_timeout(WAIT_MS)
        self.context.add_init_script(LISTEN)
        self.console = []
        self.pages = []

    def open(self, path, status=200):
        page = self.context.new_page()
        url = f"{self.server.http}{path}"

        def console(msg):
            where = msg.location.get("url", "")
            # A 404 page's own status is reported as a failed load, and so is
            # the icon the admin's pages do not name (Chromium asks for it).
            expected = (status == 404 and where == url) or where.endswith(
                "/favicon.ico"
            )
            if msg.type in ("error", "warning") and not expected:
                self.console.append(f"{msg.text} ({where})")

        page.on("console", console)
        page.goto(url)
        self.pages.append(page)
        return page

    def violations(self):
        found = []
        for page in self.pages:
            if not page.is_closed():
                found += page.evaluate("window.__violations || []")
        return found


@pytest.fixture
def watched(browser, running_server):
    context = Watched(browser, running_server)
    yield context
    context.context.close()


def test_the_chat_pages_run_under_the_policy(watched, make_room):
    slug = make_room("Policy")
    lobby = watched.open("/")
    expect(lobby.get_by_role("heading", level=1)).to_have_text("Rooms")
    missing = watched.open("/rooms/no-such-room/", status=404)
    expect(missing.get_by_role("heading", level=1)).to_have_text("Not found")

    room = watched.open(f"/rooms/{slug}/")
    join(room, "csp")
    say(room, "under the policy")
    expect(message(room, "under the policy")).to_have_count(1)
    expect(room.locator("#log li.message.pending")).to_have_count(0)
    # The nickname's colours are set through element.style, which CSP allows.
    colour = room.locator("#log li.message .nickname").first.evaluate(
        "el => el.style.getPropertyValue('--nick-light')"
    )

    assert colour
    assert watched.violations() == []
    assert [line for line in watched.console if "Content Security" in line] == []
    assert watched.console == []


def test_the_admin_runs_under_the_policy(watched, database):
    username = f"csp-{time.monotonic_ns()}"
    add_staff(database, username, superuser=True)

    page = watched.open("/admin/login/?next=/admin/")
    sign_in(page, username)
    for path in ("/admin/chat/room/", "/admin/chat/room/add/", "/admin/chat/message/"):
        page.goto(f"{watched.server.http}{path}")
        expect(page.locator("#content")).to_be_visible()
    # The sidebar's toggle and the theme switch are the admin's own scripts.
    page.goto(f"{watched.server.http}/admin/chat/room/")
    page.locator("#toggle-nav-sidebar").click()

    assert watched.violations() == []
    assert watched.console == []

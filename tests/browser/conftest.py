"""
Headless Debian Chromium against a real Daphne process (tests/harness/).

The server runs as in production: DEBUG off, WhiteNoise serving the hashed static
files, secure session cookies. Chromium keeps and sends those on
http://127.0.0.1, which it counts as a trustworthy origin, so the room page works
over plain http here without any setting for tests.
"""

import shutil
import time
import uuid

import pytest
from django.contrib.auth.hashers import make_password
from playwright.sync_api import expect

from tests.harness.database import shared_database
from tests.harness.servers import Daphne, server_env, static_env

CHROMIUM = shutil.which("chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# How long any Playwright wait lasts before the test fails.
WAIT_MS = 8000
expect.set_options(timeout=WAIT_MS)


@pytest.fixture(autouse=True)
def _fresh_hub_and_layer():
    """The chat runs in the Daphne process here, not in the test's."""
    yield


@pytest.fixture(scope="package")
def chromium():
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    return CHROMIUM


@pytest.fixture(scope="package")
def database(chromium, tmp_path_factory):
    with shared_database(tmp_path_factory) as database:
        yield database


@pytest.fixture(scope="package")
def server(database, tmp_path_factory, _collected_static):
    daphne = Daphne(
        "browser",
        tmp_path_factory.mktemp("browser"),
        # A page on the HTTP transport tries its WebSocket again within 1-3 s,
        # and a participant on it that went leaves after 3 s
        # (tests/browser/test_http_transport.py).
        server_env(
            database,
            "",
            CHAT_WEBSOCKET_RETRY_SECONDS=2,
            CHAT_HTTP_GRACE_SECONDS=3,
            # A reload comes back within 2 s (tests/browser/test_returning.py).
            CHAT_PRESENCE_GRACE_SECONDS=2,
            **static_env(),
        ),
    )
    try:
        daphne.start()
        yield daphne
    finally:
        daphne.stop()


@pytest.fixture
def running_server(server):
    """The server, started again if a test left it stopped."""
    if not server.alive:
        server.start()
    return server


@pytest.fixture(scope="package")
def browser(chromium):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


# The password of every account add_staff makes.
STAFF_PASSWORD = "browser-staff-check-password-1"


def add_staff(database, username, *, superuser=False):
    """A staff account (a superuser if asked) with STAFF_PASSWORD."""
    now = time.strftime("%Y-%m-%d %H:%M:%S+00:00", time.gmtime())
    database.query(
        "INSERT INTO auth_user (password, is_superuser, username, first_name, "
        "last_name, email, is_staff, is_active, date_joined) "
        "VALUES (%s, %s, %s, '', '', '', %s, %s, %s)",
        (make_password(STAFF_PASSWORD), superuser, username, True, True, now),
    )


def sign_in(page, username):
    """Through the admin's login form, as a person does: on its index after."""
    page.locator("#id_username").fill(username)
    page.locator("#id_password").fill(STAFF_PASSWORD)
    page.locator("input[type=submit]").click()
    expect(page.locator("#site-name")).to_be_visible()


def write_messages(database, slug, texts_by_seq, nickname="old"):
    """Messages written straight into the room, as another instance would; the
    room's last_seq moves to the highest seq. A seq left out is one that a
    moderator deleted."""
    room_id = database.query("SELECT id FROM chat_room WHERE slug = %s", (slug,))
    room_id = room_id[0][0]
    now = time.strftime("%Y-%m-%d %H:%M:%S+00:00", time.gmtime())
    for seq, text in texts_by_seq.items():
        database.query(
            "INSERT INTO chat_message "
            "(room_id, seq, nickname, text, created, client_id, visitor) "
            "VALUES (%s, %s, %s, %s, %s, '', '')",
            (room_id, seq, nickname, text, now),
        )
    database.query(
        "UPDATE chat_room SET last_seq = %s WHERE id = %s",
        (max(texts_by_seq), room_id),
    )


@pytest.fixture
def make_room(database):
    """A room of this test's own (nobody else's people in it), with `messages`
    old messages; archived after they were written, as a moderator would."""

    def make(name, *, messages=0, archived=False):
        slug = f"{name.lower().replace(' ', '-')}-{uuid.uuid4().hex[:6]}"
        database.create_room(slug, name)
        if messages:
            texts = {seq: f"{name} #{seq}" for seq in range(1, messages + 1)}
            write_messages(database, slug, texts)
        if archived:
            database.query(
                "UPDATE chat_room SET archived = %s WHERE slug = %s", (True, slug)
            )
        return slug

    return make


class Pages:
    """Browser pages, each in a context of its own: its own cookies, so its own
    visitor, as two people on two machines."""

    def __init__(self, browser, server):
        self.browser = browser
        self.server = server
        self.contexts = []
        self.opened = 0
        # Every dialog and uncaught error on any page: injected script shows here.
        self.dialogs = []
        self.errors = []
        # Every WebSocket frame of every page, shown for a failed test.
        self.frames = []

    def open(self, path, *, fake_clock=False, script=None, **context_options):
        """A page at `path`; with fake_clock its timers run only when the test
        moves the clock (page.clock.run_for); `script` runs before the page's
        own."""
        context = self.browser.new_context(**context_options)
        context.set_default_timeout(WAIT_MS)
        self.contexts.append(context)
        return self.open_in(context, path, fake_clock=fake_clock, script=script)

    def open_in(self, context, path, *, fake_clock=False, script=None):
        """Another page in the context of one opened before: another tab of the
        same visitor."""
        page = context.new_page()
        if script is not None:
            page.add_init_script(script)
        page.on("dialog", self._dialog)
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.opened += 1
        label = f"page {self.opened}"
        page.on("websocket", lambda socket: self._watch(socket, label))
        page.on("request", lambda request: self._request(request, label))
        if fake_clock:
            page.clock.install()
        page.goto(f"{self.server.http}{path}")
        return page

    def _watch(self, socket, label):
        def seen(direction):
            def record(payload):
                stamp = time.strftime("%H:%M:%S", time.gmtime())
                self.frames.append(f"{stamp} {label} {direction} {str(payload)[:300]}")

            return record

        socket.on("framesent", seen(">"))
        socket.on("framereceived", seen("<"))

    def _request(self, request, label):
        # The HTTP transport's traffic, shown beside the WebSocket frames.
        if "/http/" in request.url:
            stamp = time.strftime("%H:%M:%S", time.gmtime())
            path = request.url.split("/http/", 1)[1].split("?")[0]
            body = request.post_data or ""
            self.frames.append(f"{stamp} {label} {request.method} {path} {body[:200]}")

    def _dialog(self, dialog):
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def close(self):
        for context in self.contexts:
            context.close()


@pytest.fixture
def pages(browser, running_server):
    log_start = len(running_server.log())
    pages = Pages(browser, running_server)
    yield pages
    pages.close()
    # pytest shows this only for a failed test.
    print(running_server.log()[log_start:][-5000:])
    print("\n".join(pages.frames[-80:]))
    assert pages.errors == [], pages.errors

"""The Content-Security-Policy header on every page (chat/csp.py, settings)."""

import re

import pytest
from django.contrib.auth import get_user_model

pytestmark = pytest.mark.django_db

PAGES = {
    "lobby": ("/", 200),
    "room": ("/rooms/general/", 200),
    "not found": ("/rooms/nowhere/", 404),
    "admin login": ("/admin/login/", 200),
}


def policy(response):
    header = response["Content-Security-Policy"]
    directives = {}
    for part in header.split(";"):
        name, *sources = part.split()
        assert name not in directives, f"{name} twice in {header}"
        directives[name] = set(sources)
    return directives


def expected(socket_origin):
    return {
        "default-src": {"'self'"},
        "script-src": {"'self'"},
        "connect-src": {"'self'", socket_origin},
        "style-src": {"'self'"},
        "img-src": {"'self'", "data:"},
        "frame-ancestors": {"'none'"},
        "base-uri": {"'self'"},
        "form-action": {"'self'"},
    }


@pytest.mark.parametrize("page", PAGES)
def test_every_page_has_the_policy(client, page):
    path, status = PAGES[page]
    response = client.get(path)
    assert response.status_code == status
    assert policy(response) == expected("ws://testserver")


def test_the_socket_source_follows_the_host_and_the_front_ends_https(client, settings):
    settings.ALLOWED_HOSTS = ["chat.example.com"]
    response = client.get(
        "/rooms/general/",
        headers={"host": "chat.example.com", "x-forwarded-proto": "https"},
    )
    assert policy(response)["connect-src"] == {"'self'", "wss://chat.example.com"}


def test_the_admin_has_it_and_needs_no_inline_script_or_style(client):
    user = get_user_model().objects.create_superuser("mod", "m@example.com", "pw-x")
    client.force_login(user)
    for path in ("/admin/", "/admin/chat/room/", "/admin/chat/room/add/"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert policy(response) == expected("ws://testserver"), path
        html = response.content.decode()
        assert not re.search(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)", html)
        assert not re.search(r"\sstyle=", html), path
        assert not re.search(r"\son[a-z]+=", html), path


@pytest.mark.parametrize("page", ["lobby", "room", "not found"])
def test_the_chat_pages_need_no_inline_script_or_style(client, page):
    html = client.get(PAGES[page][0]).content.decode()
    # Scripts from files, and the room's configuration as JSON data (not run).
    for tag in re.findall(r"<script[^>]*>", html):
        assert "src=" in tag or 'type="application/json"' in tag, tag
    assert not re.search(r"\sstyle=", html)
    assert "<style" not in html
    assert not re.search(r"\son[a-z]+=", html)


def test_a_foreign_host_gets_its_400_without_an_error(client):
    response = client.get("/", headers={"host": "evil.example"})
    assert response.status_code == 400
    assert "ws://" not in response.get("Content-Security-Policy", "")

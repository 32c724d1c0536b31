"""Admin sign-in throttling (chat/signin.py, django-axes)."""

import datetime

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth import get_user_model

from chat.signin import client_address
from tests.harness.servers import show_settings

pytestmark = pytest.mark.django_db

PASSWORD = "right-horse-battery-staple"
LOGIN = "/admin/login/?next=/admin/"


@pytest.fixture
def moderator():
    return get_user_model().objects.create_superuser(
        "moderator", "mod@example.com", PASSWORD
    )


def sign_in(client, password, username="moderator", address="203.0.113.9"):
    return client.post(
        LOGIN,
        {"username": username, "password": password},
        REMOTE_ADDR=address,
    )


def signed_in(client):
    return client.get("/admin/").status_code == 200


def test_wrong_passwords_lock_out_even_the_right_one(client, moderator):
    assert settings.CHAT_LOGIN_FAILURES == 5
    answers = [sign_in(client, f"wrong-{n}").status_code for n in range(5)]

    refused = sign_in(client, PASSWORD)

    # The form again for the first wrong ones; the last one locks out.
    assert answers[:4] == [200] * 4
    assert answers[4] == 429
    assert refused.status_code == 429
    assert not signed_in(client)


def test_the_lockout_is_per_username_and_address(client, moderator, django_user_model):
    django_user_model.objects.create_superuser("other", "o@example.com", PASSWORD)
    for n in range(5):
        sign_in(client, f"wrong-{n}")

    assert sign_in(client, PASSWORD).status_code == 429
    # The same username from another address, another username from this one.
    assert sign_in(client, PASSWORD, address="198.51.100.4").status_code == 302
    client.logout()
    assert sign_in(client, PASSWORD, username="other").status_code == 302


def test_the_lockout_ends_after_its_time(client, moderator):
    for n in range(5):
        sign_in(client, f"wrong-{n}")
    assert sign_in(client, PASSWORD).status_code == 429

    minutes = settings.CHAT_LOGIN_LOCKOUT_MINUTES + 1
    AccessAttempt.objects.update(
        attempt_time=datetime.datetime.now(datetime.UTC)
        - datetime.timedelta(minutes=minutes)
    )

    assert sign_in(client, PASSWORD).status_code == 302
    assert signed_in(client)


def test_a_right_password_before_the_limit_forgets_the_failures(client, moderator):
    for n in range(4):
        sign_in(client, f"wrong-{n}")
    assert sign_in(client, PASSWORD).status_code == 302
    client.logout()

    answers = [sign_in(client, f"again-{n}").status_code for n in range(4)]

    assert answers == [200] * 4
    assert sign_in(client, PASSWORD).status_code == 302


def test_a_forged_forwarded_address_or_agent_does_not_escape_the_lockout(
    client, moderator, settings
):
    # One proxy in front (App Service): only the entry it appended counts.
    settings.CHAT_PROXY_HOPS = 1
    for n in range(5):
        client.post(
            LOGIN,
            {"username": "moderator", "password": f"wrong-{n}"},
            REMOTE_ADDR="10.0.0.2",
            HTTP_X_FORWARDED_FOR=f"192.0.2.{n}, 203.0.113.9:5{n}000",
            HTTP_USER_AGENT=f"guesser/{n}",
        )

    refused = client.post(
        LOGIN,
        {"username": "moderator", "password": PASSWORD},
        REMOTE_ADDR="10.0.0.2",
        HTTP_X_FORWARDED_FOR="192.0.2.99, 203.0.113.9:61000",
    )

    assert refused.status_code == 429


@pytest.mark.parametrize(
    ("remote", "forwarded", "hops", "expected"),
    [
        ("203.0.113.9", None, 0, "203.0.113.9"),
        ("2001:db8::1", None, 0, "2001:db8::1"),
        ("10.0.0.2", "198.51.100.7:4711", 1, "198.51.100.7"),
        ("10.0.0.2", "1.2.3.4, [2001:db8::7]:443", 1, "2001:db8::7"),
        # Not an address (a unix socket, a port left on): counted without one.
        ("203.0.113.9:5000", None, 0, None),
        (None, None, 0, None),
    ],
)
def test_client_address(rf, settings, remote, forwarded, hops, expected):
    settings.CHAT_PROXY_HOPS = hops
    meta = {"REMOTE_ADDR": remote}
    if forwarded:
        meta["HTTP_X_FORWARDED_FOR"] = forwarded
    request = rf.post(LOGIN)
    request.META.update(meta)
    assert client_address(request) == expected


def test_limits_come_from_the_environment():
    env = {
        "DEBUG": "1",
        "CHAT_LOGIN_FAILURES": "3",
        "CHAT_LOGIN_LOCKOUT_MINUTES": "60",
    }
    result = show_settings(env, "AXES_FAILURE_LIMIT", "AXES_COOLOFF_TIME")
    refused = show_settings({**env, "CHAT_LOGIN_FAILURES": "0"})

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        '{"AXES_FAILURE_LIMIT": 3, "AXES_COOLOFF_TIME": "1:00:00"}'
    )
    assert refused.returncode != 0
    assert "CHAT_LOGIN_FAILURES must be a positive integer" in refused.stderr

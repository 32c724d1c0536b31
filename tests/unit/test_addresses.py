"""chat/addresses.py: the client's address behind the configured proxies."""

import pytest

from chat.addresses import client_address, scope_address


def test_without_proxies_the_peer_is_the_client(settings):
    settings.CHAT_PROXY_HOPS = 0
    assert client_address("10.0.0.5", ["203.0.113.1"]) == "10.0.0.5"


@pytest.mark.parametrize(
    ("hops", "header", "expected"),
    [
        # App Service appends the client it saw, with its port.
        (1, ["198.51.100.7:51234"], "198.51.100.7"),
        # What the client wrote itself stands to the left and is not believed.
        (1, ["6.6.6.6, 198.51.100.7:51234"], "198.51.100.7"),
        (1, ["6.6.6.6", "198.51.100.7"], "198.51.100.7"),
        # Application Gateway, then App Service.
        (2, ["6.6.6.6, 198.51.100.7:443, 10.1.0.4:8080"], "198.51.100.7"),
        (1, ["[2001:db8::1]:443"], "2001:db8::1"),
        (1, ["2001:db8::2"], "2001:db8::2"),
    ],
)
def test_behind_proxies_the_entry_they_appended_counts(
    settings, hops, header, expected
):
    settings.CHAT_PROXY_HOPS = hops
    assert client_address("169.254.1.1", header) == expected


@pytest.mark.parametrize("header", [[], ["not an address"], ["1.2.3.4"]])
def test_a_missing_or_short_header_falls_back_to_the_peer(settings, header):
    settings.CHAT_PROXY_HOPS = 2 if header == ["1.2.3.4"] else 1
    assert client_address("169.254.1.1", header) == "169.254.1.1"


def test_an_asgi_scope_gives_its_address(settings):
    settings.CHAT_PROXY_HOPS = 1
    scope = {
        "client": ("169.254.1.1", 4000),
        "headers": [(b"x-forwarded-for", b"6.6.6.6, 198.51.100.7:1")],
    }
    assert scope_address(scope) == "198.51.100.7"
    assert scope_address({"headers": []}) == "unknown"

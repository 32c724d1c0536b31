"""
Settings read from the environment: each bad value stops start-up with an error
that names the variable. Every case runs in a fresh interpreter, as a server
process would start.
"""

import json
import os

import pytest

from tests.harness.servers import show_settings

# Only what decides the outcome of each case is inherited by none of them.
CONTROLLED = (
    "DEBUG",
    "SECRET_KEY",
    "ALLOWED_HOSTS",
    "WEBSITE_HOSTNAME",
    "DATABASE_URL",
    "REDIS_URL",
    "REDIS_AUTH",
    "REDIS_SENTINELS",
    "REDIS_SENTINEL_MASTER",
    "CHAT_CHANNEL_LAYER",
    "CHAT_MAX_MESSAGE_LENGTH",
    "CHAT_RATE_BURST",
    "SECURE_SSL_REDIRECT",
)


def start(**variables):
    """Set up Django in a new process with these variables; (code, out, err),
    `out` holding DEBUG, DATABASES and CHANNEL_LAYERS as JSON."""
    env = {k: v for k, v in os.environ.items() if k not in CONTROLLED}
    done = show_settings(env | variables, "DEBUG", "DATABASES", "CHANNEL_LAYERS")
    return done.returncode, done.stdout, done.stderr


PRODUCTION = {"SECRET_KEY": "a-long-random-test-key", "ALLOWED_HOSTS": "example.com"}


def refused(**variables):
    code, _out, err = start(**variables)
    assert code != 0
    last = err.strip().splitlines()[-1]
    assert last.startswith("django.core.exceptions.ImproperlyConfigured: "), err
    return last


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("CHAT_MAX_MESSAGE_LENGTH", "abc", "CHAT_MAX_MESSAGE_LENGTH='abc'"),
        ("CHAT_RATE_BURST", "0", "CHAT_RATE_BURST must be a positive integer"),
        ("REDIS_URL", "http://x", "got scheme 'http'"),
        # An Azure access key pasted with its '/' unencoded.
        (
            "REDIS_URL",
            "rediss://:Ab3/x+y=@name.redis.cache.windows.net:6380/0",
            "must be URL-encoded",
        ),
        ("REDIS_URL", "redis://:pa/ss@localhost:6379/0", "must be URL-encoded"),
        ("REDIS_URL", "redis://:123/x@localhost:6379/0", "must be URL-encoded"),
        ("DATABASE_URL", "nonsense", "postgres://user:password@host:5432/name"),
        ("DEBUG", "maybe", "DEBUG='maybe'"),
        ("SECURE_SSL_REDIRECT", "fasle", "SECURE_SSL_REDIRECT='fasle'"),
        ("CHAT_PRESENCE_GRACE_SECONDS", "-1", "must be 0 or more"),
        # Past the instance timeout (30 s): the sweeps would cut the grace.
        ("CHAT_PRESENCE_GRACE_SECONDS", "45", "less than CHAT_INSTANCE_TIMEOUT"),
        ("CHAT_PRESENCE_GRACE_SECONDS", "soon", "CHAT_PRESENCE_GRACE_SECONDS='soon'"),
        ("REDIS_AUTH", "password", "must be 'key' or 'entra-id'"),
        ("REDIS_SENTINELS", "sentinel-1", "must list host:port pairs"),
        ("REDIS_SENTINELS", "s1:26379,s2:port", "got 's2:port'"),
    ],
)
def test_bad_value_is_refused_naming_the_variable(variable, value, says):
    message = refused(**PRODUCTION, **{variable: value})
    assert variable in message
    assert says in message


def test_debug_off_without_secret_key_says_what_to_set():
    message = refused(ALLOWED_HOSTS="example.com")
    assert "SECRET_KEY is not set" in message
    assert "Set SECRET_KEY" in message


def test_debug_off_without_allowed_hosts_says_what_to_set():
    message = refused(SECRET_KEY="a-long-random-test-key")
    assert "Set ALLOWED_HOSTS" in message


def test_debug_on_needs_neither():
    code, out, err = start(DEBUG="1")
    assert code == 0, err
    settings = json.loads(out)
    assert settings["DEBUG"] is True
    assert settings["DATABASES"]["default"]["ENGINE"] == "django.db.backends.sqlite3"
    assert settings["CHANNEL_LAYERS"]["default"]["BACKEND"] == (
        "channels.layers.InMemoryChannelLayer"
    )


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("redis://", "redis://"),
        ("redis://:pass@host", "redis://:pass@host"),
        (
            "rediss://:k3y%2Bwith%2Fslash%3D@name.redis.cache.windows.net:6380/0",
            "rediss://:k3y%2Bwith%2Fslash%3D@name.redis.cache.windows.net:6380/0",
        ),
    ],
)
def test_redis_urls_give_a_redis_channel_layer(url, address):
    code, out, err = start(**PRODUCTION, REDIS_URL=url)
    assert code == 0, err
    layer = json.loads(out)["CHANNEL_LAYERS"]["default"]
    assert layer["BACKEND"] == "channels_redis.core.RedisChannelLayer"
    (host,) = layer["CONFIG"]["hosts"]
    assert host["address"] == address
    assert ("ssl_cert_reqs" in host) == url.startswith("rediss://")


def test_several_redis_urls_are_the_layers_shards_in_order():
    first, second = "redis://one:6379/0", "rediss://:k%2B@two:10000/0"
    code, out, err = start(**PRODUCTION, REDIS_URL=f"{first}, {second}")
    assert code == 0, err
    hosts = json.loads(out)["CHANNEL_LAYERS"]["default"]["CONFIG"]["hosts"]
    assert [host["address"] for host in hosts] == [first, second]
    assert "ssl_cert_reqs" in hosts[1]
    assert "ssl_cert_reqs" not in hosts[0]


def test_a_bad_shard_among_several_is_refused():
    message = refused(**PRODUCTION, REDIS_URL="redis://one:6379/0,http://two")
    assert "got scheme 'http'" in message


def test_entra_id_gives_each_shard_the_token_provider_and_no_key():
    url = "rediss://name.region.redis.azure.net:10000/0"
    code, out, err = start(**PRODUCTION, REDIS_AUTH="entra-id", REDIS_URL=url)
    assert code == 0, err
    (host,) = json.loads(out)["CHANNEL_LAYERS"]["default"]["CONFIG"]["hosts"]
    assert host["address"] == url
    assert "EntraIdCredentialsProvider" in host["credential_provider"]


def test_entra_id_with_a_key_in_the_url_is_refused():
    message = refused(
        **PRODUCTION,
        REDIS_AUTH="entra-id",
        REDIS_URL="rediss://:k3y@name.region.redis.azure.net:10000/0",
    )
    assert "REDIS_URL must carry no user or key" in message


def test_sentinels_give_the_layer_their_primary():
    code, out, err = start(
        **PRODUCTION, REDIS_SENTINELS="s1:26379, s2:26380", REDIS_SENTINEL_MASTER="chat"
    )
    assert code == 0, err
    (host,) = json.loads(out)["CHANNEL_LAYERS"]["default"]["CONFIG"]["hosts"]
    assert host["sentinels"] == [["s1", 26379], ["s2", 26380]]
    assert host["master_name"] == "chat"


def test_sentinels_and_a_url_together_are_refused():
    message = refused(
        **PRODUCTION, REDIS_SENTINELS="s1:26379", REDIS_URL="redis://r:6379/0"
    )
    assert "Set REDIS_URL or REDIS_SENTINELS, not both" in message

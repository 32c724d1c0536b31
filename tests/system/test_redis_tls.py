"""
Redis as Azure Cache for Redis offers it: TLS only, an access key with '+', '/'
and '=' in it, a rediss:// URL with the key URL-encoded, and the server's
certificate verified (here against a throwaway certificate authority, named by
REDIS_SSL_CA_CERTS).
"""

import pytest

from tests.harness.certificates import make_certificates
from tests.harness.clients import ChatClient
from tests.harness.fixtures import (
    fixture_database,  # noqa: F401 - a pytest fixture
    fixture_room,  # noqa: F401 - a pytest fixture
)
from tests.harness.redis import RedisServer, password_url, require_redis_server
from tests.harness.servers import Cluster, Daphne, static_env
from tests.harness.waiting import wait_until

pytestmark = pytest.mark.processes

# Shaped like an Azure access key: base64, so '+', '/' and '='.
ACCESS_KEY = "k3Y+with/Slash+and=Equals0aB1cD2eF3gH4iJ5kL6mN7oP8q="


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    require_redis_server()  # skip before anything is made for it
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def cluster(certificates, database, tmp_path, _collected_static):
    redis = RedisServer(tmp_path, tls=certificates, password=ACCESS_KEY)
    env = {**static_env(), "REDIS_SSL_CA_CERTS": certificates["ca"]}
    with Cluster(
        tmp_path,
        database,
        redis=redis,
        redis_url=password_url(ACCESS_KEY, redis.port),
        env=env,
    ) as cluster:
        yield cluster


async def test_two_instances_chat_through_tls_redis_with_a_key(cluster, room):
    a, b = cluster.servers
    alice = ChatClient("alice", room.slug)
    bob = ChatClient("bob", room.slug)
    try:
        await alice.connect(a)
        await bob.connect(b)
        await alice.expect("joined", nickname="bob", participants=2)
        await alice.say("over TLS")
        await bob.expect("message", text="over TLS", nickname="alice")
        await bob.send({"type": "typing"})
        await alice.expect("typing", nickname="bob")
    finally:
        await alice.close()
        await bob.close()
    assert not cluster.tracebacks()
    for server in cluster.servers:
        assert "layer_" not in server.log()


async def test_a_certificate_from_another_authority_is_refused(cluster, room, tmp_path):
    """Verification is on: an instance trusting another CA cannot use Redis."""
    (tmp_path / "other").mkdir()
    other = make_certificates(tmp_path / "other", name="other")
    env = {**cluster.env(), "REDIS_SSL_CA_CERTS": other["ca"]}
    stranger = Daphne("stranger", tmp_path, env)
    try:
        stranger.start()
        carol = ChatClient("carol", room.slug)
        try:
            await carol.connect(stranger)
            # Her own message is still saved and echoed to her, without Redis.
            client_id = await carol.say("nobody hears this live")
            await carol.expect("message", client_id=client_id)
        finally:
            await carol.close()
        wait_until(
            lambda: "CERTIFICATE_VERIFY_FAILED" in stranger.log(),
            10,
            "the stranger's certificate failure in its log",
        )
    finally:
        stranger.stop()

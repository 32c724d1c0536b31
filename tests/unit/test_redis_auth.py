"""
Signing in to Redis with a Microsoft Entra ID token (REDIS_AUTH=entra-id): the
token redis-entraid hands out reaches Redis through each layer's own
connections, as the user named by the token's object id. Azure is not reached:
the identity provider here issues a token of the same shape, and a private
Redis knows the user by it, as Azure Managed Redis knows a managed identity.
"""

import time
import uuid

import jwt
import pytest
from channels_redis.core import RedisChannelLayer
from channels_redis.pubsub import RedisPubSubChannelLayer
from redis.auth.idp import IdentityProviderInterface
from redis.auth.token import JWToken
from redis.auth.token_manager import RetryPolicy, TokenManagerConfig
from redis.exceptions import AuthenticationError
from redis_entraid.cred_provider import EntraIdCredentialsProvider

from chat import redis_auth
from tests.harness.redis import RedisServer

pytestmark = pytest.mark.processes

OBJECT_ID = "3f2b8c1e-0000-4000-8000-00000000c0de"
LAYERS = [RedisChannelLayer, RedisPubSubChannelLayer]


def issued_token(object_id: str) -> str:
    now = int(time.time())
    claims = {"oid": object_id, "iat": now, "exp": now + 3600}
    return jwt.encode(claims, "issuer-key-for-tests-only-32-bytes!", algorithm="HS256")


TOKEN = issued_token(OBJECT_ID)


class Issuer(IdentityProviderInterface):
    """Issues one token, as Entra ID does for an app's identity."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.requests = 0

    def request_token(self, force_refresh: bool = False) -> JWToken:
        self.requests += 1
        return JWToken(self.token)


def layer_signed_in_by(layer_class, server, issuer):
    config = TokenManagerConfig(0.7, 0, 1000, RetryPolicy(1, 10))
    host = {
        "address": server.url,
        "credential_provider": EntraIdCredentialsProvider(issuer, config),
    }
    return layer_class(hosts=[host], prefix=f"t{uuid.uuid4().hex[:6]}")


@pytest.fixture
def redis_with_identity(tmp_path):
    """A private Redis that admits the identity with its token as the password,
    and no one without a user (the default user is off)."""
    server = RedisServer(tmp_path)
    server.start()
    admin = server.client()
    admin.acl_setuser(
        OBJECT_ID, enabled=True, passwords=[f"+{TOKEN}"], keys=["*"],
        channels=["*"], commands=["+@all"],
    )  # fmt: skip
    admin.acl_setuser("default", enabled=False)
    yield server
    server.stop()


@pytest.mark.parametrize("layer_class", LAYERS)
async def test_a_layer_signs_in_with_the_identitys_token(
    redis_with_identity, layer_class
):
    issuer = Issuer(TOKEN)
    layer = layer_signed_in_by(layer_class, redis_with_identity, issuer)
    channel = await layer.new_channel()
    await layer.group_add("room-1", channel)
    await layer.group_send("room-1", {"type": "chat.event", "text": "signed in"})
    assert (await layer.receive(channel))["text"] == "signed in"
    assert issuer.requests >= 1
    await layer.flush()


@pytest.mark.parametrize("layer_class", LAYERS)
async def test_another_identitys_token_is_refused(redis_with_identity, layer_class):
    issuer = Issuer(issued_token("someone-else"))
    layer = layer_signed_in_by(layer_class, redis_with_identity, issuer)
    with pytest.raises(AuthenticationError):
        channel = await layer.new_channel()
        await layer.send(channel, {"type": "chat.event"})


def test_entra_id_gives_every_client_a_token_provider():
    found = redis_auth.credential_provider("entra-id")
    assert isinstance(found, EntraIdCredentialsProvider)
    assert redis_auth.credential_provider("key") is None

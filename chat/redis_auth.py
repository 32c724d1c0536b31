"""
How the chat signs in to Redis. REDIS_AUTH=key (the default): with the password
or access key in REDIS_URL. REDIS_AUTH=entra-id: with a Microsoft Entra ID token
for the app's managed identity (or whatever azure-identity's
DefaultAzureCredential finds: AZURE_CLIENT_ID for a user-assigned identity, a
service principal's AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET),
which Azure Managed Redis accepts in place of access keys, off by default there.

redis-entraid fetches the token and renews it before it expires; every Redis
client of the process (the channel layer's, the rate limits', the start-up and
readiness checks') takes it from the one provider made here. Nothing here
imports Django: settings.py calls it.
"""

from redis.credentials import CredentialProvider

# The scope Azure's Redis services issue tokens for.
ENTRA_ID_SCOPE = "https://redis.azure.com/.default"

MODES = ("key", "entra-id")


def credential_provider(mode: str) -> CredentialProvider | None:
    """The credentials every Redis client is given, or None for the URL's own."""
    if mode == "key":
        return None
    from redis_entraid.cred_provider import create_from_default_azure_credential

    return create_from_default_azure_credential((ENTRA_ID_SCOPE,))

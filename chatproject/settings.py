"""
Settings for the chat, all read from the environment in this one place.

With nothing set, the project runs on SQLite and the in-memory channel layer, so
``DEBUG=1 manage.py runserver`` works on a bare laptop. ``DATABASE_URL`` switches to
PostgreSQL and ``REDIS_URL`` (``redis://`` or ``rediss://``) to channels-redis.
"""

import logging
import os
import re
import socket
import ssl
import tempfile
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import environ
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from chat import redis_auth

BASE_DIR = Path(__file__).resolve().parent.parent

_BOOL_WORDS = {"1": True, "true": True, "yes": True, "on": True}
_BOOL_WORDS |= {"0": False, "false": False, "no": False, "off": False}


class _Env(environ.Env):
    def bool(self, var: str, default: Any = environ.Env.NOTSET) -> bool:
        # environ reads every word it does not know ("maybe", "ture") as False;
        # a typo must not quietly turn a switch off.
        word = self.str(var, default="").strip().lower()
        if not word:
            return super().bool(var, default=default)
        if word not in _BOOL_WORDS:
            raise ValueError(f"use one of {', '.join(_BOOL_WORDS)}")
        return _BOOL_WORDS[word]


env = _Env()
# A local .env (never committed; see .env.example) is read when present.
if (BASE_DIR / ".env").is_file():
    env.read_env(BASE_DIR / ".env")

# Refused with DEBUG off (below): only ever a development key.
DEV_SECRET_KEY = "django-insecure-development-key-do-not-use-in-production"  # noqa: S105

T = TypeVar("T")


def _typed(name: str, cast: Callable[..., T], default: T) -> T:
    """Read one variable, turning a bad value into an error that names it."""
    try:
        return cast(name, default=default)
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            f"The environment variable {name}={os.environ.get(name)!r} is not valid: "
            f"{exc}"
        ) from None


def _positive_int(name: str, default: int) -> int:
    value = _typed(name, env.int, default)
    if value < 1:
        raise ImproperlyConfigured(f"{name} must be a positive integer, got {value}.")
    return value


def _positive_float(name: str, default: float) -> float:
    value = _typed(name, env.float, default)
    if not value > 0:
        raise ImproperlyConfigured(f"{name} must be a positive number, got {value}.")
    return value


DEBUG = _typed("DEBUG", env.bool, False)
SECRET_KEY = env.str("SECRET_KEY", default="") or DEV_SECRET_KEY

# App Service sets WEBSITE_HOSTNAME to the app's own host name.
WEBSITE_HOSTNAME = env.str("WEBSITE_HOSTNAME", default="")
ALLOWED_HOSTS = _typed("ALLOWED_HOSTS", env.list, [])
if WEBSITE_HOSTNAME:
    ALLOWED_HOSTS.append(WEBSITE_HOSTNAME)
if DEBUG and not ALLOWED_HOSTS:
    ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]"]
# A refused CSRF check on the HTTP transport is answered as its other errors.
CSRF_FAILURE_VIEW = "chat.http_views.csrf_failure"
CSRF_TRUSTED_ORIGINS = _typed("CSRF_TRUSTED_ORIGINS", env.list, [])
if WEBSITE_HOSTNAME:
    CSRF_TRUSTED_ORIGINS.append(f"https://{WEBSITE_HOSTNAME}")

if not DEBUG:
    if SECRET_KEY == DEV_SECRET_KEY:
        raise ImproperlyConfigured(
            "DEBUG is off and SECRET_KEY is not set. Set SECRET_KEY to a long random "
            "value (python -c 'import secrets; print(secrets.token_urlsafe(50))'), or "
            "set DEBUG=1 for local development."
        )
    if not ALLOWED_HOSTS:
        raise ImproperlyConfigured(
            "DEBUG is off and ALLOWED_HOSTS is empty. Set ALLOWED_HOSTS to the "
            "comma-separated host names the site is served on (App Service adds "
            "WEBSITE_HOSTNAME by itself), or set DEBUG=1 for local development."
        )

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "axes",
    "csp",
    "channels",
    "chat",
]

MIDDLEWARE = [
    "chat.health.HealthCheckMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # After WhiteNoise: static files need no policy of their own.
    "chat.csp.SiteCSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a locked-out sign-in into its 429.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "chatproject.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "chatproject.wsgi.application"
ASGI_APPLICATION = "chatproject.asgi.application"

# Database: SQLite unless DATABASE_URL names another.
SQLITE_PATH = env.str("SQLITE_PATH", default=str(BASE_DIR / "db.sqlite3"))
try:
    DATABASES = {
        "default": env.db_url("DATABASE_URL", default=f"sqlite:///{SQLITE_PATH}")
    }
    if not DATABASES["default"].get("ENGINE"):
        raise ValueError("it names no known database")
except (ValueError, KeyError, ImproperlyConfigured) as exc:
    raise ImproperlyConfigured(
        f"DATABASE_URL is not a database URL this project understands "
        f"(postgres://user:password@host:5432/name or sqlite:////path): {exc}"
    ) from None
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several writers (two Daphne processes in tests, the admin beside the chat)
    # wait for the lock instead of failing at once.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": ("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"),
        }
    )
    # The test database is a file as well, not Django's shared in-memory one:
    # there a read on one thread while another writes (the saves thread beside
    # Channels' database thread) fails at once with "database table is locked"
    # instead of waiting as it does here.
    DATABASES["default"].setdefault("TEST", {}).setdefault(
        "NAME", str(Path(tempfile.gettempdir()) / f"chat-tests-{os.getpid()}.sqlite3")
    )
else:
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)
# Connections are kept between socket events: opening one for every event cost
# more than the event's own query (measured with bench/run.py). Each HTTP request
# under ASGI runs in a thread of its own, whose connection goes with the thread.
DATABASES["default"]["CONN_MAX_AGE"] = _typed("CONN_MAX_AGE", env.int, 60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Channel layer: in memory for one process, Redis for several. Several URLs,
# separated by commas, are shards: channels-redis spreads channels and rooms over
# them by a hash of their names, so every instance must list the same URLs in the
# same order (docs/scaling.md, "Several Redis servers").
REDIS_URL = env.str("REDIS_URL", default="")
REDIS_URLS = [url.strip() for url in REDIS_URL.split(",") if url.strip()]
# A private certificate authority for rediss:// (Azure's certificates are signed
# by a public one that the system already trusts).
REDIS_SSL_CA_CERTS = env.str("REDIS_SSL_CA_CERTS", default="")
# How to sign in: the key in REDIS_URL, or a Microsoft Entra ID token
# (chat/redis_auth.py; docs/deploy-azure.md).
REDIS_AUTH = env.str("REDIS_AUTH", default="key")
if REDIS_AUTH not in redis_auth.MODES:
    raise ImproperlyConfigured(
        f"REDIS_AUTH must be 'key' or 'entra-id', got {REDIS_AUTH!r}."
    )
REDIS_CREDENTIAL_PROVIDER = redis_auth.credential_provider(REDIS_AUTH)


# Every connection of the channel layer, to a URL's server or a sentinel's primary.
_CONNECTION_OPTIONS: dict[str, object] = {
    # Azure Cache for Redis closes connections idle for 10 minutes; a health
    # check on reuse and TCP keepalive keep the pool's connections usable.
    "health_check_interval": 30,
    "socket_keepalive": True,
    "socket_connect_timeout": 5,
    # redis-py 8 gives every read a 5 s timeout by default, exactly the 5 s
    # that channels-redis's receive blocks in BZPOPMIN: an idle receive then
    # failed with TimeoutError every 5-10 s (and dropped the connection, with
    # any message popped in that instant). Longer than BZPOPMIN's wait, still
    # finite so that a dead link is noticed.
    "socket_timeout": 15,
    "retry_on_timeout": True,
}


def _redis_host(url: str) -> dict[str, object]:
    parts = urlsplit(url)
    # No host is allowed: redis-py then connects to localhost:6379.
    if parts.scheme not in ("redis", "rediss"):
        raise ImproperlyConfigured(
            "REDIS_URL must look like redis://host:6379/0 or rediss://:"
            "<url-encoded access key>@<name>.<region>.redis.azure.net:10000/0, "
            f"got scheme {parts.scheme!r}."
        )
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
        # After the host only a database number may follow; an unencoded '/',
        # '?' or '#' in the password ends the host early and leaves '@' behind.
        if not re.fullmatch(r"(/\d*)?", parts.path) or "@" in (
            parts.query + parts.fragment
        ):
            raise ValueError
    except ValueError:
        raise ImproperlyConfigured(
            "REDIS_URL does not end in host:port/database with numbers for the port "
            "and the database. A password or access key containing '+', '/' or '=' "
            "must be URL-encoded (%2B, %2F, %3D)."
        ) from None
    host: dict[str, object] = {"address": url, **_CONNECTION_OPTIONS}
    if REDIS_CREDENTIAL_PROVIDER is not None:
        if parts.password or parts.username:
            raise ImproperlyConfigured(
                "REDIS_AUTH=entra-id signs in with a token: REDIS_URL must carry no "
                "user or key (rediss://<name>.<region>.redis.azure.net:10000/0)."
            )
        host["credential_provider"] = REDIS_CREDENTIAL_PROVIDER
    if parts.scheme == "rediss":
        host["ssl_cert_reqs"] = ssl.CERT_REQUIRED
        if REDIS_SSL_CA_CERTS:
            host["ssl_ca_certs"] = REDIS_SSL_CA_CERTS
    return host


def _sentinel_address(entry: str) -> tuple[str, int]:
    host, _, port = entry.strip().rpartition(":")
    if not host or not port.isdigit():
        raise ImproperlyConfigured(
            "REDIS_SENTINELS must list host:port pairs separated by commas, e.g. "
            f"sentinel-1:26379,sentinel-2:26379; got {entry!r}."
        )
    return host, int(port)


# Redis Sentinel, for a self-hosted Redis with replicas: the sentinels that say
# which server is the primary, asked again after a failover, instead of REDIS_URL.
REDIS_SENTINELS = [
    _sentinel_address(a) for a in env.list("REDIS_SENTINELS", default=[])
]
REDIS_SENTINEL_MASTER = env.str("REDIS_SENTINEL_MASTER", default="mymaster")
if REDIS_SENTINELS and REDIS_URLS:
    raise ImproperlyConfigured(
        "Set REDIS_URL or REDIS_SENTINELS, not both: with sentinels they say "
        "where the primary is."
    )


def _sentinel_host() -> dict[str, object]:
    return {
        "sentinels": REDIS_SENTINELS,
        "master_name": REDIS_SENTINEL_MASTER,
        **_CONNECTION_OPTIONS,
        # Asking a sentinel is quick, or that sentinel is down: try the next.
        "sentinel_kwargs": {"socket_timeout": 2, "socket_connect_timeout": 2},
    }


# The channel layer's Redis servers: its shards, or the one the sentinels name.
REDIS_LAYER_HOSTS = [_redis_host(url) for url in REDIS_URLS] or (
    [_sentinel_host()] if REDIS_SENTINELS else []
)

# Which channels-redis layer relays between instances; docs/scaling.md says why
# the default was chosen.
CHAT_LAYER_PREFIX = env.str("CHAT_LAYER_PREFIX", default="chat")
CHAT_CHANNEL_LAYER = env.str("CHAT_CHANNEL_LAYER", default="core")
if CHAT_CHANNEL_LAYER not in ("core", "pubsub"):
    raise ImproperlyConfigured(
        f"CHAT_CHANNEL_LAYER must be 'core' or 'pubsub', got {CHAT_CHANNEL_LAYER!r}."
    )

if REDIS_LAYER_HOSTS and CHAT_CHANNEL_LAYER == "pubsub":
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {
                "hosts": REDIS_LAYER_HOSTS,
                "prefix": CHAT_LAYER_PREFIX,
            },
        }
    }
elif REDIS_LAYER_HOSTS:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": REDIS_LAYER_HOSTS,
                # Each process has one channel that receives every room's events
                # (chat/hub.py), so it needs more room than one socket's channel.
                "capacity": _positive_int("CHAT_LAYER_CAPACITY", 2000),
                "expiry": 30,
                # A killed process's hub stays in its rooms' groups, and every event
                # is still queued for it, until this expiry (a day by default). Live
                # hubs renew theirs every few seconds (chat/hub.py); the margin
                # covers clock differences between instances.
                "group_expiry": 300,
                "prefix": CHAT_LAYER_PREFIX,
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# Sessions are for signed-in people; other visitors are known by a signed cookie
# (chat/visitors.py), without a row each.
SESSION_COOKIE_AGE = 60 * 60 * 24 * 30

# Admin sign-in throttling (django-axes, chat/signin.py): this many wrong
# passwords for one username from one address lock that pair out for this long,
# the right password included. Counted in the database, so across instances.
CHAT_LOGIN_FAILURES = _positive_int("CHAT_LOGIN_FAILURES", 5)
CHAT_LOGIN_LOCKOUT_MINUTES = _positive_int("CHAT_LOGIN_LOCKOUT_MINUTES", 15)
AUTHENTICATION_BACKENDS = [
    # First: it refuses a locked-out pair before any password is checked.
    "chat.signin.ThrottledSignIn",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = CHAT_LOGIN_FAILURES
AXES_COOLOFF_TIME = timedelta(minutes=CHAT_LOGIN_LOCKOUT_MINUTES)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_CLIENT_IP_CALLABLE = "chat.signin.client_address"
# A right password before the limit forgets the failures before it.
AXES_RESET_ON_SUCCESS = True

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": f"django.contrib.auth.password_validation.{name}"}
    for name in (
        "UserAttributeSimilarityValidator",
        "MinimumLengthValidator",
        "CommonPasswordValidator",
        "NumericPasswordValidator",
    )
]

# The page speaks the visitor's language where it has it (LocaleMiddleware:
# the language chosen on the page, else the browser's Accept-Language), and
# English otherwise. The catalogs are compiled and kept in locale/, so no
# GNU gettext is needed to deploy (README: "Translations").
LANGUAGE_CODE = "en"
LANGUAGES = [
    ("en", "English"),
    ("fr", "Français"),
    ("sv", "Svenska"),
    ("ko", "한국어"),
]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "chatproject.storage.HashedStaticFilesStorage"
        )
    },
}

# Behind App Service's (or any) TLS-terminating front end.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
if not DEBUG:
    SECURE_SSL_REDIRECT = _typed("SECURE_SSL_REDIRECT", env.bool, True)
    # Cookies only over https. SECURE_COOKIES=0 is for a production-like run
    # served over plain http (a loopback test server, a private network).
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = _typed(
        "SECURE_COOKIES", env.bool, True
    )
    # Sent only on responses to https requests (SecurityMiddleware).
    SECURE_HSTS_SECONDS = _typed("SECURE_HSTS_SECONDS", env.int, 60 * 60 * 24 * 365)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = _typed("SECURE_HSTS_PRELOAD", env.bool, False)
    SECURE_CONTENT_TYPE_NOSNIFF = True
    if not SECURE_HSTS_PRELOAD:
        # Preloading commits a whole registered domain, which only its owner can
        # decide (an *.azurewebsites.net app cannot); it is opted into with
        # SECURE_HSTS_PRELOAD=1, so check --deploy's reminder is not a finding.
        SILENCED_SYSTEM_CHECKS = ["security.W021"]

# Content-Security-Policy on every page (django-csp; chat.csp adds the page's
# own ws(s)://host to connect-src). Pages load scripts and styles from static
# files only: no inline script, no style attribute, no eval.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "connect-src": [SELF],
        "style-src": [SELF],
        # data: for the empty icon in templates/base.html.
        "img-src": [SELF, "data:"],
        "frame-ancestors": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
    }
}

# The chat's own limits (documented in docs/protocol.md).
CHAT_MAX_MESSAGE_LENGTH = _positive_int("CHAT_MAX_MESSAGE_LENGTH", 2000)
CHAT_MAX_FRAME_BYTES = _positive_int("CHAT_MAX_FRAME_BYTES", 64 * 1024)
CHAT_RATE_BURST = _positive_int("CHAT_RATE_BURST", 10)
CHAT_RATE_PER_SECOND = _positive_float("CHAT_RATE_PER_SECOND", 2.0)
# Every visitor behind one address together (an office behind one NAT): messages
# in all rooms, and joins. A visitor's own joins have a budget of their own.
CHAT_ADDRESS_RATE_BURST = _positive_int("CHAT_ADDRESS_RATE_BURST", 60)
CHAT_ADDRESS_RATE_PER_SECOND = _positive_float("CHAT_ADDRESS_RATE_PER_SECOND", 20.0)
CHAT_JOIN_BURST = _positive_int("CHAT_JOIN_BURST", 10)
CHAT_JOIN_PER_SECOND = _positive_float("CHAT_JOIN_PER_SECOND", 1.0)
CHAT_ADDRESS_JOIN_BURST = _positive_int("CHAT_ADDRESS_JOIN_BURST", 60)
CHAT_ADDRESS_JOIN_PER_SECOND = _positive_float("CHAT_ADDRESS_JOIN_PER_SECOND", 5.0)
# How many proxies in front of the app append to X-Forwarded-For: App Service's
# front end is one (set by itself there), Application Gateway before it another.
# The client's address is the entry that many places from the right
# (chat/addresses.py).
CHAT_PROXY_HOPS = _typed("CHAT_PROXY_HOPS", env.int, 1 if WEBSITE_HOSTNAME else 0)
if not 0 <= CHAT_PROXY_HOPS <= 10:
    raise ImproperlyConfigured(
        f"CHAT_PROXY_HOPS must be a whole number from 0 to 10, got {CHAT_PROXY_HOPS}."
    )
CHAT_HISTORY_LIMIT = _positive_int("CHAT_HISTORY_LIMIT", 50)
CHAT_CATCH_UP_LIMIT = _positive_int("CHAT_CATCH_UP_LIMIT", 500)
# How long after sending a message its author may still edit it (deleting it
# has no limit).
CHAT_EDIT_WINDOW_SECONDS = _positive_int("CHAT_EDIT_WINDOW_SECONDS", 15 * 60)
# A socket with more than this waiting to be sent has stopped reading; it is closed
# (4408) and catches up when it reconnects (chat/transport.py).
CHAT_SEND_BUFFER_BYTES = _positive_int("CHAT_SEND_BUFFER_BYTES", 1024 * 1024)
# WebSockets one process holds at once; more are turned away with server_full
# (chat/capacity.py). Each may hold up to CHAT_MAX_FRAME_BYTES coming in and
# CHAT_SEND_BUFFER_BYTES going out besides its own ~60 KiB: about 1.2 MiB with
# the defaults, so 2000 sockets at their worst are some 2.4 GiB, inside a P1v3
# instance's 8 GiB (docs/deploy-azure.md) with room for the rest; twice the
# 1000 clients per process that docs/benchmarks.md measured.
CHAT_MAX_CONNECTIONS = _positive_int("CHAT_MAX_CONNECTIONS", 2000)
# An instance that has not written its heartbeat for this long is taken for dead,
# and its connections leave the rooms' presence.
CHAT_HEARTBEAT_SECONDS = _positive_float("CHAT_HEARTBEAT_SECONDS", 10.0)
CHAT_INSTANCE_TIMEOUT_SECONDS = _positive_float("CHAT_INSTANCE_TIMEOUT_SECONDS", 30.0)
if CHAT_INSTANCE_TIMEOUT_SECONDS < 2 * CHAT_HEARTBEAT_SECONDS:
    # Live instances would take each other for dead between two beats.
    raise ImproperlyConfigured(
        "CHAT_INSTANCE_TIMEOUT_SECONDS must be at least twice "
        f"CHAT_HEARTBEAT_SECONDS ({CHAT_HEARTBEAT_SECONDS} s), got "
        f"{CHAT_INSTANCE_TIMEOUT_SECONDS} s."
    )
# A socket that closes without a leave frame keeps its place in the room this
# long (chat/partings.py): a reload, a network blip or a deploy brings the
# person back before the room hears they left. 0 turns the grace off.
CHAT_PRESENCE_GRACE_SECONDS = _typed("CHAT_PRESENCE_GRACE_SECONDS", env.float, 5.0)
if not 0 <= CHAT_PRESENCE_GRACE_SECONDS < CHAT_INSTANCE_TIMEOUT_SECONDS:
    # Past the instance timeout, the sweeps would take a stopped instance's
    # people out before their grace ran out.
    raise ImproperlyConfigured(
        "CHAT_PRESENCE_GRACE_SECONDS must be 0 or more and less than "
        f"CHAT_INSTANCE_TIMEOUT_SECONDS ({CHAT_INSTANCE_TIMEOUT_SECONDS} s), got "
        f"{CHAT_PRESENCE_GRACE_SECONDS} s."
    )
# /metrics (chat/metrics_endpoint.py) answers only requests bearing this token;
# unset, it does not exist.
CHAT_METRICS_TOKEN = env.str("CHAT_METRICS_TOKEN", default="")
# The HTTP transport (docs/protocol.md): a participant with no stream and no
# poll under way stays in the room this long (a long-poll between two polls, a
# stream a proxy cut); a poll with nothing to say is held this long; a stream
# says something (a comment) at least this often, ahead of idle timeouts.
CHAT_HTTP_GRACE_SECONDS = _positive_float("CHAT_HTTP_GRACE_SECONDS", 15.0)
CHAT_POLL_HOLD_SECONDS = _positive_float("CHAT_POLL_HOLD_SECONDS", 20.0)
CHAT_STREAM_HEARTBEAT_SECONDS = _positive_float("CHAT_STREAM_HEARTBEAT_SECONDS", 15.0)
# A page on the HTTP transport tries a WebSocket again about this often.
CHAT_WEBSOCKET_RETRY_SECONDS = _positive_float("CHAT_WEBSOCKET_RETRY_SECONDS", 30.0)
# Allocations between two young collections of the garbage collector (Python's
# default is 700); see chat/collector.py.
CHAT_GC_YOUNG_THRESHOLD = _positive_int("CHAT_GC_YOUNG_THRESHOLD", 2000)
CHAT_INSTANCE_ID = env.str(
    "CHAT_INSTANCE_ID",
    default=f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}",
)

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()


def _without_traceback(record: logging.LogRecord) -> bool:
    record.exc_info = record.exc_text = None
    return True


LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "line": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "filters": {
        "without_traceback": {
            "()": "django.utils.log.CallbackFilter",
            "callback": _without_traceback,
        },
    },
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": "line",
        },
    },
    "root": {"handlers": ["stdout"], "level": "WARNING"},
    "loggers": {
        "chat": {"handlers": ["stdout"], "level": LOG_LEVEL, "propagate": False},
        "django": {"handlers": ["stdout"], "level": "INFO", "propagate": False},
        # Daphne's start-up lines ("Listening on TCP address ...") and errors.
        "daphne": {"handlers": ["stdout"], "level": "INFO", "propagate": False},
        # A foreign Host header (scanners, anything addressing the bare IP) is a
        # line, not a traceback.
        "django.security.DisallowedHost": {
            "handlers": ["stdout"],
            "filters": ["without_traceback"],
            "propagate": False,
        },
    },
}

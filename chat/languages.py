"""
The language a socket's or a stream's words are in: the one its visitor's
pages are in. Django's LocaleMiddleware chooses it for pages (the language
the switcher stored in its cookie, else the browser's Accept-Language); ASGI
connections outside Django's views are given the same choice here.
"""

from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

from django.utils import translation


def scope_language(scope: Mapping[str, Any]) -> str:
    """The language LocaleMiddleware would choose for this connection."""
    headers = {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in scope.get("headers", ())
    }
    # What Django's choice reads of a request: its cookies and this header.
    request: Any = SimpleNamespace(
        COOKIES=scope.get("cookies", {}),
        META={"HTTP_ACCEPT_LANGUAGE": headers.get("accept-language", "")},
    )
    return translation.get_language_from_request(request)

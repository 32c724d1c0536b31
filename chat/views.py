from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from . import protocol, selectors, visitors
from .models import Room

HISTORY_PAGE_MAX = 200


@require_GET
def lobby(request: HttpRequest) -> HttpResponse:
    return render(request, "chat/lobby.html", {"rooms": selectors.rooms_for_lobby()})


def _room_or_404(slug: str) -> Room:
    room = selectors.room_get(slug=slug)
    if room is None:
        raise Http404(_("There is no room called %(slug)s.") % {"slug": slug})
    return room


@require_GET
def room(request: HttpRequest, slug: str) -> HttpResponse:
    room = _room_or_404(slug)
    nickname = request.user.get_username() if request.user.is_authenticated else ""
    # The protocol as the page speaks it (its codes, limits and addresses), and
    # this page's own room and visitor beside it.
    client = protocol.client_config(
        room_slug=room.slug, history_page_max=HISTORY_PAGE_MAX
    )
    config = {
        "room": room.slug,
        "nickname": nickname,
        "archived": room.archived,
        "maxMessageLength": client["limits"]["max_message_length"],
        "nicknameMaxLength": client["limits"]["nickname_max_length"],
        # The HTTP transport's POSTs carry it (Django's CSRF check).
        "csrfToken": get_token(request),
    }
    response = render(
        request,
        "chat/room.html",
        {"room": room, "config": config, "protocol": client},
    )
    # The visitor's identity on the socket: a signed cookie, not a session row
    # for everyone who opens the page (chat/visitors.py).
    if not visitors.has_cookie(request):
        visitors.give_cookie(response)
    return response


def _query_int(request: HttpRequest, name: str, minimum: int = 0) -> int | None:
    value = request.GET.get(name)
    if value is None or value == "":
        return None
    # At most 18 digits: any such number fits the database's 64-bit seq column.
    if (
        not value.isascii()
        or not value.isdigit()
        or len(value) > 18
        or int(value) < minimum
    ):
        raise ValueError(
            _(
                "%(name)s must be a whole number of at least %(minimum)d "
                "and at most 18 digits."
            )
            % {"name": name, "minimum": minimum}
        )
    return int(value)


def _json_error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": code, "message": message}, status=status)


@require_GET
def history(request: HttpRequest, slug: str) -> JsonResponse:
    """Messages as JSON, paged by seq: ?after=N (catch up) or ?before=N (older)."""
    room = selectors.room_get(slug=slug)
    if room is None:
        return _json_error(
            404,
            protocol.ROOM_NOT_FOUND,
            _("There is no room called %(slug)s.") % {"slug": slug},
        )
    try:
        after = _query_int(request, "after")
        before = _query_int(request, "before")
        limit = _query_int(request, "limit", minimum=1) or settings.CHAT_HISTORY_LIMIT
    except ValueError as exc:
        return _json_error(400, "invalid_parameter", str(exc))
    if after is not None and before is not None:
        return _json_error(
            400, "invalid_parameter", _("Give after or before, not both.")
        )
    page = selectors.room_history(
        room_id=room.pk, after=after, before=before, limit=min(limit, HISTORY_PAGE_MAX)
    )
    return JsonResponse(
        {
            "messages": [protocol.message_frame(m, room.slug) for m in page.messages],
            "through": page.through,
            "has_more": page.has_more,
        }
    )

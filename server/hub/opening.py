"""POST /hub/v1/round (feature "round"): a device opens a sync round with one call. It answers
what the opening calls answer (GET /epoch, POST /shortfall, a pull of the device's own origin),
and the first page of the pull, so that an idle round costs one request and a round that pushes
a change two (this call, then /push). Each part is the same function its own route runs."""

from __future__ import annotations

from flask import g

from server.core.errors import ValidationError
from server.hub.bodies import MAX_BATCH, cursor_of, json_object, only_keys
from server.hub.routes import epoch_answer, pull_page, route
from server.web.http import envelope
from server.web.openapi import Operation


@route(Operation("post", "/round", "hubRound",
                 "Open a round in one call: the epoch and features, what the hub lacks of the cursor, the hub's "
                 "part of the device's own origin past it, and the first page of the other origins' changes",
                 {"200": ("HubRound", "The round's opening", False)}, (401,), "HubRoundRequest"))
def round_opening():
    body = json_object()
    only_keys(body, {"cursor", "origin", "limit"})
    problems: dict[str, str] = {}
    cursor = cursor_of(body, problems)
    origin, limit = body.get("origin"), body.get("limit", 500)
    if not (isinstance(origin, str) and 0 < len(origin) <= 128):
        problems["origin"] = "must be this device's own origin id"
    if type(limit) is not int or not 1 <= limit <= MAX_BATCH:
        problems["limit"] = f"must be an integer from 1 to {MAX_BATCH}"
    if problems:
        raise ValidationError(problems)
    assert isinstance(origin, str) and isinstance(limit, int)  # checked above; said for the type checker
    with g.hub_store.one_look():  # the origins' tops and floors read once for the four parts
        answer = {**epoch_answer(), **g.hub_store.shortfall(cursor)}
        answer["own"] = pull_page({origin: cursor.get(origin, 0)}, limit, None, origin)
        answer["changes"] = pull_page(cursor, limit, origin, None)
    return envelope(answer)

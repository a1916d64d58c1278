"""HTTP plumbing shared by every route: the envelope, strict JSON bodies, request ids, the
Host and CORS allowlists, the optional bearer token and the one log line per request."""

from __future__ import annotations

import hmac
import itertools
import json
import logging
import re
import secrets
import time
from typing import TYPE_CHECKING, Any, Callable

import orjson
from flask import Blueprint, Flask, Request, Response, current_app, g, request
from werkzeug.exceptions import HTTPException

from server.core.errors import AppError, BadBody, PreconditionFailed, UnsupportedMedia
from server.core.etags import etag_of
from server.web.json_text import parse_json

if TYPE_CHECKING:
    from server.web.openapi import Operation

log = logging.getLogger("server.http")
TRACE_RE = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
HTTP_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
    409: "conflict", 412: "precondition_failed", 413: "payload_too_large",
    415: "unsupported_media_type", 429: "too_many_requests", 500: "internal_error", 503: "store_unavailable",
}
STANDARD_HEADERS = (("X-Content-Type-Options", "nosniff"), ("Cache-Control", "no-store"))
# Trace ids need only be unique: a random per-process prefix and a counter (uuid4 per request cost
# more than the rest of the request bookkeeping).
_TRACE_PREFIX = secrets.token_hex(6)
_trace_counter = itertools.count(1)


def declaring(bp: Blueprint, operations: list) -> Callable:
    """A decorator factory: `@route(Operation(...))` registers the view on `bp` under the
    operation's path, method and id, and lists the operation for the OpenAPI document."""
    def route(op: Operation) -> Callable:
        def register(view: Callable) -> Callable:
            # The index ("/") answers at /api/v1 too, not with a redirect a token check stops.
            bp.add_url_rule(op.path, op.op_id, view, methods=[op.method.upper()], strict_slashes=op.path != "/")
            operations.append(op)
            return view
        return register
    return route


def _json_response(body: dict, status: int, headers: dict | None = None) -> Response:
    """Every answer of ours: built with all its headers at once (setting them one by one on a
    built response scans the list each time, and that was a visible share of a request)."""
    listed = [("Content-Type", "application/json"), *STANDARD_HEADERS, ("X-Request-ID", g.get("trace_id", ""))]
    if headers:
        listed += headers.items()
    return Answer(_dumps(body), status=status, headers=listed)


class Answer(Response):
    """One of our own answers, built with the standard headers: _standard_headers passes it by."""


def envelope(data: Any, status: int = 200, headers: dict | None = None) -> Response:
    return _json_response({"data": data, "meta": {"traceId": g.get("trace_id", "")}}, status, headers)


def record_answer(record: dict, status: int = 200, headers: dict | None = None) -> Response:
    """A single record, with its ETag so a client can send it back in If-Match."""
    return envelope(record, status, {**(headers or {}), "ETag": etag_of(record)})


def cached_document(name: str, build: Callable[[], Any]) -> Response:
    """A JSON document built once per app (its OpenAPI document) and then served as built."""
    doc = current_app.extensions.get(name)
    if doc is None:
        doc = current_app.extensions[name] = orjson.dumps(build())
    return current_app.response_class(doc, mimetype="application/json")


def health_answer(whose: str, **more: Any) -> Response:
    """Liveness: 503 when this server's store does not answer (`whose` store, in the message),
    else ok with the store's kind and `more`."""
    if not current_app.extensions["store"].ping():
        return error(503, "store_unavailable", f"{whose} store does not answer.")
    kind = current_app.config["SETTINGS"].db_connector
    return envelope({"status": "ok", **more, "store": {"kind": kind, "ok": True}})


def if_match() -> list[str] | None:
    """The If-Match header as a list of entity tags (or ["*"]); None when absent."""
    raw = request.headers.get("If-Match")
    if raw is None:
        return None
    # Anything but `*` or a current tag fails the precondition (412), malformed values included:
    # a client that sent a condition must never have it silently ignored.
    return [tag.strip() for tag in raw.split(",") if tag.strip()] or [""]


def error_body(code: str, message: str, trace_id: str = "", fields: dict | None = None,
               extra: dict | None = None) -> dict[str, Any]:
    """The error envelope, also for answers made outside a request (serving.py's)."""
    err: dict[str, Any] = {"code": code, "message": message}
    if fields:
        err["fields"] = fields
    if extra:
        err.update(extra)
    return {"error": err, "meta": {"traceId": trace_id}}


def refusal(status: int, message: str, trace: str, code: str | None = None) -> tuple[bytes, list[tuple[str, str]]]:
    """A refusal made outside the app (by waitress or the hub's front): the envelope's bytes and
    the headers every answer of ours carries."""
    body = orjson.dumps(error_body(code or HTTP_CODES.get(status, "bad_request"), message, trace))
    return body, [("Content-Type", "application/json"), *STANDARD_HEADERS, ("X-Request-ID", trace)]


def error(status: int, code: str, message: str, fields: dict | None = None,
          extra: dict | None = None) -> Response:
    g.error_code = code  # for whoever counts refusals by their code (a hub's metrics)
    return _json_response(error_body(code, message, g.get("trace_id", ""), fields, extra), status)


def _dumps(value: Any) -> bytes | str:
    try:
        return orjson.dumps(value)  # every answer's body: about ten times faster than json.dumps
    except TypeError:  # e.g. a lone surrogate echoed in an error message: escape it as json does
        return json.dumps(value, separators=(",", ":"))


NO_BODY = object()


def json_body(required: bool = True) -> Any:
    """The request body parsed strictly: JSON media type, UTF-8, no NaN/Infinity, no duplicate
    keys, bounded depth. Raises BadBody/UnsupportedMedia; size is capped by MAX_CONTENT_LENGTH.
    An empty body where none is required gives NO_BODY."""
    raw = request.get_data(cache=True)
    if not raw and not required:
        return NO_BODY
    if request.mimetype != "application/json":
        raise UnsupportedMedia("Send the body as application/json.")
    return parse_json(raw)


def json_object(required: bool = True) -> dict:
    body = json_body(required)
    if body is NO_BODY:
        return {}
    if not isinstance(body, dict):
        raise BadBody("The body must be a JSON object.")
    return body


def install(app: Flask, *, browser_facing: bool = True) -> None:
    """The request hooks, in the order they run, and the error handlers. Flask pays a dispatch
    per registered hook and every `request` or `g` access goes through a proxy, so the small
    hooks run from one before and one after hook that resolve both once: this is on every
    request's path. A hub server is not `browser_facing`: no browser page talks to it, it sits
    behind a proxy under a public name, and each device brings its own token (server/hub/routes.py)."""
    settings = app.config["SETTINGS"]
    before: list[Before] = [_start_trace]
    after: list[After] = [_standard_headers, _log_line]
    if browser_facing:
        before += [_host_check({h.lower() for h in settings.allowed_hosts}), _preflight]
        if settings.api_token:
            public = {f"/api/v1{op.path}" for op in app.extensions["operations"] if op.public}
            public |= {p.rstrip("/") for p in public if p.endswith("/")}  # the index, also without its slash
            public |= set(app.config.get("PUBLIC_PATHS", ()))  # the sync page's shell
            before.append(_token_check(settings.api_token, public))
        after.insert(1, _cors_headers(set(settings.cors_origins)))

    def run_before() -> Response | None:
        req, ctx = _unproxied()
        for hook in before:
            resp = hook(req, ctx)
            if resp is not None:
                return resp
        return None

    def run_after(resp: Response) -> Response:
        req, ctx = _unproxied()
        for hook in after:
            resp = hook(req, ctx, resp)
        return resp

    app.before_request(run_before)
    app.after_request(run_after)
    app.register_error_handler(AppError, _app_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)


Before = Callable[[Request, Any], "Response | None"]
After = Callable[[Request, Any, Response], Response]


def _unproxied() -> tuple[Request, Any]:
    """The request and `g` themselves, resolved once for the hooks (flask types `request` as the
    Request its proxy stands for, so the proxy's own method is not in its type)."""
    return request._get_current_object(), g._get_current_object()  # type: ignore[attr-defined]


def trace_id(incoming: str | None) -> str:
    """A request's trace id: the client's X-Request-ID when it is one we can log, else a new one."""
    return incoming if incoming and TRACE_RE.match(incoming) else f"{_TRACE_PREFIX}-{next(_trace_counter):x}"


def log_answer(method: str, path: str, status: int, started: float, trace: str) -> None:
    """The one log line of a request (also for answers a server makes before the app sees it)."""
    if log.isEnabledFor(logging.INFO):
        log.info("%s %s %s %.1fms trace=%s", method, path[:200], status, (time.perf_counter() - started) * 1000,
                 trace)


def _start_trace(req: Request, ctx: Any) -> None:
    ctx.started = time.perf_counter()
    ctx.trace_id = trace_id(req.headers.get("X-Request-ID"))


def _host_check(allowed_hosts: set[str]) -> Before:
    """A web page must not reach the server through DNS rebinding: only our own Host names."""
    def check(req: Request, ctx: Any) -> Response | None:
        host = (req.host or "").lower()
        hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if hostname not in allowed_hosts and host not in allowed_hosts:
            return error(400, "invalid_host", "This Host header is not allowed (see ALLOWED_HOSTS).")
        return None
    return check


def _preflight(req: Request, ctx: Any) -> Response | None:
    # Browsers send CORS preflights without credentials: answer them before the token check.
    return current_app.response_class(status=204) if req.method == "OPTIONS" else None


def bearer_token(header: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header ("" when there is none): the scheme
    in any case and one or more spaces after it, as RFC 9110 allows."""
    scheme, _, token = (header or "").strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def token_matches(header: str | None, token: str) -> bool:
    """Whether an Authorization header brings `token`, compared in constant time."""
    return hmac.compare_digest(bearer_token(header).encode("utf-8", "replace"), token.encode())


def _token_check(token: str, public: set[str]) -> Before:
    def check(req: Request, ctx: Any) -> Response | None:
        if req.path in public:
            return None
        if token_matches(req.headers.get("Authorization"), token):
            return None
        resp = error(401, "unauthorized", "A valid bearer token is required.")
        resp.headers["WWW-Authenticate"] = 'Bearer realm="coursesync"'
        return resp
    return check


def _standard_headers(req: Request, ctx: Any, resp: Response) -> Response:
    if not isinstance(resp, Answer):  # our own answers carry them already
        resp.headers["X-Request-ID"] = getattr(ctx, "trace_id", "")
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers.setdefault("Cache-Control", "no-store")
    return resp


def _cors_headers(origins: set[str]) -> Callable[[Request, Any, Response], Response]:
    def add(req: Request, ctx: Any, resp: Response) -> Response:
        origin = req.headers.get("Origin")
        if origin and origin in origins:
            resp.headers["Access-Control-Allow-Origin"] = origin
            resp.headers["Vary"] = "Origin"
            resp.headers["Access-Control-Expose-Headers"] = "ETag, X-Request-ID, Location"
            if req.method == "OPTIONS":
                resp.headers["Access-Control-Allow-Methods"] = "GET, POST, PATCH, DELETE, OPTIONS"
                resp.headers["Access-Control-Allow-Headers"] = "Content-Type, Authorization, If-Match, X-Request-ID"
                resp.headers["Access-Control-Max-Age"] = "600"
        return resp
    return add


def _log_line(req: Request, ctx: Any, resp: Response) -> Response:
    log_answer(req.method, req.path, resp.status_code, getattr(ctx, "started", time.perf_counter()),
               getattr(ctx, "trace_id", ""))
    return resp


def _app_error(exc: AppError) -> Response:
    if isinstance(exc, PreconditionFailed) and exc.current:
        resp = error(exc.status, exc.code, exc.message, extra={"current": exc.current})
        resp.headers["ETag"] = etag_of(exc.current)
        return resp
    resp = error(exc.status, exc.code, exc.message, exc.fields, extra=exc.detail or None)
    retry_after = getattr(exc, "retry_after", None)  # a refusal that says when to try again
    if retry_after:
        resp.headers["Retry-After"] = str(retry_after)
    return resp


HTTP_MESSAGES = {404: "No such route.", 405: "This method is not allowed on this route."}


def too_large_message(limit: int | None) -> str:
    return f"The body is larger than {(limit or 0) // (1024 * 1024)} MiB." if limit else "The body is too large."


def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    message = too_large_message(current_app.config.get("MAX_CONTENT_LENGTH")) if status == 413 else \
        HTTP_MESSAGES.get(status, exc.description or exc.name)
    resp = error(status, HTTP_CODES.get(status, "http_error"), message)
    if status == 405 and exc.get_response().headers.get("Allow"):
        resp.headers["Allow"] = exc.get_response().headers["Allow"]
    return resp


def _unexpected(exc: Exception) -> Response:
    log.exception("unhandled error trace=%s", g.get("trace_id", ""))
    return error(500, "internal_error", "Something went wrong on the server; see its log.")

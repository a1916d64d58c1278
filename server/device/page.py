"""The sync page for people: `/` and `/sync` (a shell that asks for API_TOKEN when one is set)
and `/sync/panel` (what the shell shows and refreshes every few seconds). Server-rendered with
Jinja; the page's little JavaScript only fetches the panel and posts the buttons' actions to
the JSON API, so everything works offline, with no build step and nothing from elsewhere."""

from __future__ import annotations

import datetime as dt
import re
import secrets
import time
from typing import Any

from flask import Blueprint, current_app, render_template

from server.core.records import LABELS, USER
from server.core.times import seconds_from_iso
from server.sync.ledger import losing_value
from server.sync.status import sync_status

bp = Blueprint("page", __name__, template_folder="templates")
PUBLIC_PATHS = ("/", "/sync", "/favicon.ico", "/favicon.svg")  # the shell holds no data: the panel needs the token
# Two arrows turning into each other, in the page's blue: drawn here, nothing fetched from elsewhere.
FAVICON = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="7" '
           'fill="#1565c0"/><path d="M9 13a8 8 0 0 1 13.6-4.6L25 6v7h-7l2.6-2.6A5 5 0 0 0 12 13z'
           'M23 19a8 8 0 0 1-13.6 4.6L7 26v-7h7l-2.6 2.6A5 5 0 0 0 20 19z" fill="#fff"/></svg>')
CONFLICTS_SHOWN = 50
QUARANTINE_SHOWN = 20


def _csp(nonce: str) -> str:
    return (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; connect-src 'self'; "
            "img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


@bp.get("/")
@bp.get("/sync")
def shell():
    nonce = secrets.token_urlsafe(16)
    settings = current_app.config["SETTINGS"]
    panel = None if settings.api_token else _panel_html()  # with a token, the script fetches it
    html = render_template("sync.html", nonce=nonce, panel=panel, needs_token=bool(settings.api_token))
    return current_app.response_class(html, mimetype="text/html", headers={"Content-Security-Policy": _csp(nonce)})


@bp.get("/favicon.svg")
@bp.get("/favicon.ico")  # browsers ask for it whatever the page says; every one of them reads SVG
def favicon():
    return current_app.response_class(FAVICON, mimetype="image/svg+xml",
                                      headers={"Cache-Control": "public, max-age=86400"})


@bp.get("/sync/panel")
def panel():
    return current_app.response_class(_panel_html(), mimetype="text/html")


def _panel_html() -> str:
    store = current_app.extensions["store"]
    status = {**sync_status(store, current_app.extensions.get("sync")), "hubFrom": current_app.config.get("HUB_FROM")}
    now = time.time()
    listed = store.list_conflicts(CONFLICTS_SHOWN)
    names = store.conflict_names(listed) if listed else {}
    conflicts = [_conflict_view(c, names.get(c["id"], {})) for c in listed]
    return render_template("_panel.html", s=status, state=state_words(status, now), ago=lambda iso: ago(iso, now),
                           local=local_time,
                           conflicts=conflicts, quarantine=store.list_quarantine(QUARANTINE_SHOWN),
                           chart=chart(status.get("recentRounds") or []))


def ago(iso: str | None, now: float) -> str:
    """'just now', '12 s ago', '5 min ago', '3 h ago', '2 days ago'; 'never' for none."""
    ts = seconds_from_iso(iso)
    if ts is None:
        return "never"
    seconds = max(0, now - ts)
    for size, unit in ((86400, "days"), (3600, "h"), (60, "min")):
        if seconds >= size * (2 if unit == "days" else 1):
            return f"{int(seconds // size)} {unit} ago"
    return "just now" if seconds < 5 else f"{int(seconds)} s ago"


def local_time(iso: str | None) -> str:
    """An ISO UTC time in this machine's local time (the server runs on the person's own device)."""
    ts = seconds_from_iso(iso)
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M") if ts is not None else "never"


def _clock(iso: str | None) -> str:
    ts = seconds_from_iso(iso)
    return dt.datetime.fromtimestamp(ts).strftime("%H:%M:%S") if ts is not None else "soon"


# A round's error code -> (headline, what it means for the learner).
PLAIN_ERRORS = {
    "store_unavailable": ("Can't reach the hub right now",
                          "This device may be offline, or the hub is down; nothing to do but wait."),
    "hub_refused": ("The hub no longer accepts this device",
                    "Its token was revoked or is wrong: ask whoever runs the hub for a new one (HUB_TOKEN)."),
    "sync_process_lost": ("Sync stopped for a moment", "Its helper process ended; a new one starts by itself."),
    "internal_error": ("Sync ran into a problem", "This is a bug: the server's log says more."),
}


EXCEPTION_NAME = re.compile(r"\s*\((?:[A-Za-z_.]*(?:Error|Exception|Timeout|Refused)[A-Za-z]*)\)")


def in_words(error: str | None) -> str:
    """An error as the status gives it, without the names of Python's exceptions in it."""
    return EXCEPTION_NAME.sub("", error or "unknown").strip()


def state_words(s: dict[str, Any], now: float) -> dict[str, Any]:
    """The state as a learner would say it: a headline, a line of detail (and steps) and a tone."""
    return _but(_words(s, now), s)


def _words(s: dict[str, Any], now: float) -> dict[str, Any]:
    pending = s["pending"]["count"]
    if s["state"] == "disabled":
        return {"tone": "off", "headline": "Sync is off",
                "detail": "Everything you do is kept on this device, and nothing is sent anywhere. To share it "
                          "with your other devices:",
                "steps": ["Ask whoever runs your hub for an invitation for this device (they make one with "
                          "“hub invite”): one line starting with coursesync://.",
                          "Paste it under “Connect to a hub” below and press Connect.",
                          "That is all: no restart. This page then says when your devices agree."]}
    if s["state"] == "running":
        return {"tone": "busy", "headline": "Syncing now…", "detail": f"{pending} of your changes waiting to go."}
    code = (s.get("lastRound") or {}).get("errorCode") or ""
    if s["state"] == "backing_off":
        wait = max(0, int((seconds_from_iso(s["nextRun"]) or now) - now))
        headline, why = PLAIN_ERRORS.get(code, PLAIN_ERRORS["store_unavailable"])
        return {"tone": "warn", "headline": headline,
                "detail": f"Your changes are safe on this device. {why} Trying again at {_clock(s['nextRun'])} "
                          f"(in {wait} s). What went wrong: {in_words(s['lastError'])}"}
    if s["lastError"]:
        headline, why = PLAIN_ERRORS.get(code, ("The last sync did not finish", ""))
        return {"tone": "warn", "headline": headline, "detail": f"{why} {in_words(s['lastError'])}".strip()}
    if s["lastSuccess"] is None:
        return {"tone": "busy", "headline": "Not synced yet", "detail": "The first round starts shortly."}
    if pending:
        return {"tone": "busy", "headline": f"{pending} change{'s' if pending != 1 else ''} waiting to be sent",
                "detail": f"They go with the next round, at {_clock(s['nextRun'])}, or press Sync now."}
    if s["state"] == "live":
        lag = (s.get("live") or {}).get("lastRemoteLagMs")
        took = f" The last one took {lag / 1000:.1f} s to get here." if lag is not None else ""
        return {"tone": "ok", "headline": "Everything is synced, live",
                "detail": f"Connected to the hub: changes made on your other devices show here as they are made.{took}"}
    return {"tone": "ok", "headline": "Everything is synced", "detail": "This device and the hub agree."}


def _but(words: dict[str, str], s: dict[str, Any]) -> dict[str, str]:
    """A synced state that still holds something for a person to look at says so at the top."""
    lost, refused = s.get("openConflicts") or 0, s.get("quarantined") or 0
    if words["tone"] != "ok" or not (lost or refused):
        return words
    parts = ([f"{lost} value{'s' if lost != 1 else ''} lost a merge"] if lost else []) + \
            ([f"{refused} change{'s were' if refused != 1 else ' was'} refused"] if refused else [])
    return {"tone": "warn", "headline": "Synced, but " + " and ".join(parts),
            "detail": "Everything else agrees with the hub. Below: "
                      + ("restore a lost value or dismiss it" if lost else "why each change was refused") + "."}


SETTLED = {"restored": "Restored", "dismissed": "Dismissed",
           "edited": "Settled: the value was written again since, on this device or another",
           "deleted": "Settled: the record has been deleted since"}


def _named(kind: str, title: str | None) -> str:
    return f"{kind.capitalize()} “{title}”" if title else f"A {kind} with no title here"


def _conflict_view(c: dict[str, Any], names: dict[str, str | None]) -> dict[str, Any]:
    """A conflict as a person reads it: the record by its title and its course's, the field by
    its label (the ids and the field's name only as a detail)."""
    kept = c["localValue"] if c["winner"] == "local" else c["remoteValue"]
    resolution = c.get("resolution")
    settled = None
    if resolution:
        settled = SETTLED.get(resolution.get("by") or resolution["action"], resolution["action"].capitalize())
    return {**c, "kept": kept, "lost": losing_value(c),
            "what": "Your profile" if c["kind"] == USER else _named(c["kind"], names.get("title")),
            "where": f"in “{names['courseTitle']}”" if names.get("courseTitle") else "",
            "label": LABELS.get(c["field"], c["field"]),
            "settled": settled,
            "why": "deleted on another device" if c["reason"] == "deleted" else "a later edit won"}


def chart(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Bars for the recent rounds: changes sent (below) and received (above), a failed round as
    a red stub."""
    tallest = max([r["pushed"] + r["pulled"] for r in rounds] + [1])
    bars = []
    for i, r in enumerate(rounds):
        sent, got = 56 * r["pushed"] / tallest, 56 * r["pulled"] / tallest
        if r["error"]:  # a failed round stands as tall as the chart, in red: seen at a glance
            sent, got = 56.0, 0.0
        bars.append({"x": i * 10, "sent_y": 60 - 2 - sent, "sent": 2 + sent, "got_y": 60 - 2 - sent - got,
                     "got": got, "error": bool(r["error"]),
                     "label": f"{local_time(r['at'])}: sent {r['pushed']}, received {r['pulled']}, "
                              f"{r['durationMs']} ms" + (f", failed: {in_words(r['error'])}" if r["error"] else "")})
    return {"bars": bars, "width": max(10, len(rounds) * 10)}

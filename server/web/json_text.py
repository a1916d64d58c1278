"""JSON text parsed strictly, in time and memory linear in its size, whoever sent it: the one
parser of every body a device or a hub server takes.

Strict: UTF-8, no NaN or Infinity, no duplicate keys, nesting at most MAX_DEPTH deep, and (for
a hub's bodies) at most so many arrays, objects and elements, counted before anything is built.
orjson parses (in C, linearly); what it refuses, or what it takes that is not allowed here (a key
given twice), is read again by the standard library's parser, also linear, for its exact answer
and its words (a hub parses its large bodies with that one outright: see `give_way`). No step
scans the text more than a fixed number of times: the strings are found by one left-to-right
pass of a pattern that matches wherever a string starts, an unclosed one included (a pattern
that could fail there was tried again from every later quote: quadratic on a run of escaped
quotes, 23 s for 372 bytes of gzip)."""

from __future__ import annotations

import json
import re
from typing import Any, Callable

import orjson

from server.core.errors import BadBody

MAX_DEPTH = 254  # arrays and objects nested in one another: as deep as orjson writes
GIVE_WAY_EVERY = 256  # objects parsed between two calls of a parse's give_way
_DIGITS, _LONG_NUMBER = bytes.maketrans(b"123456789", b"000000000"), b"0" * 20
# A JSON string, escapes included, or the rest of the text after an unclosed quote: it matches at
# every quote, so a pass over the text never starts again inside what it has passed.
_STRING = re.compile(rb'"[^"\\]*+(?:\\(?:.|\Z)[^"\\]*+)*+(?:"|\Z)', re.DOTALL)


def count_values(raw: bytes) -> int:
    """An upper bound of the arrays, objects and elements in JSON text, counted without parsing
    it (a few bytes of `[]` cost Python a hundred; the count comes first)."""
    return raw.count(b"[") + raw.count(b"{") + raw.count(b",")


def without_strings(raw: bytes) -> bytes:
    """The text with every string (and an unclosed one, to the end) made `""`: what is left is
    the structure, whose brackets, commas and colons can be counted."""
    return _STRING.sub(b'""', raw)


def parse_json(raw: bytes, max_values: int | None = None, *, give_way: Callable[[], object] | None = None) -> Any:
    """JSON text parsed strictly; with `max_values`, text holding more arrays, objects and
    elements than that is refused before it is parsed. Raises BadBody, saying why.
    `give_way`: parsed by the standard parser, whose hook runs at every object, and which calls
    `give_way` every GIVE_WAY_EVERY objects: a hub's thread parsing a large body lets other
    users' requests run there (orjson holds the interpreter for the whole text, 14 ms for 8 MB)."""
    if max_values is not None and count_values(raw) > max_values and \
            count_values(without_strings(raw)) > max_values:  # brackets and commas in strings do not count
        raise BadBody(f"The body holds more than {max_values} JSON values.")
    if give_way is not None:
        return _standard(raw, give_way)
    try:
        value = orjson.loads(raw)
        # Written again, one colon per member and each string's own colons as they are: fewer
        # colons than the text has means a member was dropped (a key given twice). Writing also
        # refuses what is nested deeper than MAX_DEPTH, orjson's own limit.
        written = orjson.dumps(value)
    except orjson.JSONDecodeError:
        return _standard(raw)  # refused, or text orjson refuses and the standard parser takes
    except TypeError:
        raise BadBody("The body is nested too deeply.") from None
    if raw.count(b":") != written.count(b":") or b"\\u003" in raw or _LONG_NUMBER in raw.translate(_DIGITS):
        # A key given twice (said by name), or what orjson reads otherwise than the standard
        # parser: a colon written as an escape, a number of 20 digits (an integer past 64 bits
        # is a float to orjson).
        return _standard(raw)
    return value


def _depth(value: Any) -> int:
    """How deep arrays and objects nest in a parsed value, up to just past MAX_DEPTH."""
    deepest, stack = 0, [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack and deepest <= MAX_DEPTH:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in (node.values() if type(node) is dict else node)
                     if type(child) is dict or type(child) is list)
    return deepest


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _giving_way(give_way: Callable[[], object]) -> Callable[[list[tuple[str, Any]]], dict]:
    objects = 0

    def hook(pairs: list[tuple[str, Any]]) -> dict:
        nonlocal objects
        objects += 1
        if objects % GIVE_WAY_EVERY == 0:
            give_way()
        return _no_duplicate_keys(pairs)
    return hook


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _standard(raw: bytes, give_way: Callable[[], object] | None = None) -> Any:
    """The standard library's strict reading: what orjson refused is refused here too, with the
    reason in words, but for the few texts only it takes (a lone surrogate in a string, a number
    too large for a float), which the checks after parsing then refuse by field."""
    try:
        text = raw.decode("utf-8")
        hook = _no_duplicate_keys if give_way is None else _giving_way(give_way)
        value = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=hook)
    except UnicodeDecodeError:
        raise BadBody("The body is not valid UTF-8.") from None
    except RecursionError:
        raise BadBody("The body is nested too deeply.") from None
    except ValueError as exc:
        raise BadBody(f"The body is not valid JSON: {str(exc)[:120]}") from None
    if _depth(value) > MAX_DEPTH:
        raise BadBody("The body is nested too deeply.")
    return value

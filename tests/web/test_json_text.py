"""The one JSON parser of every body (server/web/json_text.py): as strict as the standard library's
reading with its hooks, in time and memory linear in the text, on whatever text a stranger
builds to make it slow (runs of quotes and backslashes, unclosed strings, brackets by the
hundred thousand), checked against a plain reference on generated text."""

from __future__ import annotations

import gzip
import json
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.core.errors import BadBody
from server.web.json_text import MAX_DEPTH, count_values, parse_json, without_strings


def reference(raw: bytes):
    """What the parser must answer, read the slow, obvious way: the standard library with a
    duplicate-key hook and no constants; None for a refusal."""
    def pairs(items):
        out = {}
        for key, value in items:
            if key in out:
                raise ValueError("duplicate")
            out[key] = value
        return out

    def constant(name):
        raise ValueError(name)

    try:
        return ("ok", json.loads(raw.decode("utf-8"), object_pairs_hook=pairs, parse_constant=constant))
    except (ValueError, RecursionError):
        return None


def ours(raw: bytes, max_values: int | None = None, yielding: bool = False):
    try:
        return ("ok", parse_json(raw, max_values, give_way=(lambda: None) if yielding else None))
    except BadBody:
        return None


def strings_removed(raw: bytes) -> bytes:
    """without_strings, one character at a time: every string (an unclosed one to the end) as `""`."""
    out, i = bytearray(), 0
    while i < len(raw):
        if raw[i:i + 1] != b'"':
            out += raw[i:i + 1]
            i += 1
            continue
        i += 1
        while i < len(raw) and raw[i:i + 1] != b'"':
            i += 2 if raw[i:i + 1] == b"\\" else 1
        i += 1
        out += b'""'
    return bytes(out)


# Pieces a stranger builds slow text from, and pieces of ordinary JSON between them.
NASTY = [b'"', b'\\"', b"\\", b"\\\\", b"[", b"]", b"{", b"}", b",", b":", b"[],", b'"a":', b"\n", b"\xff", b" "]
nasty_text = st.lists(st.tuples(st.sampled_from(NASTY), st.integers(1, 40)), max_size=12).map(
    lambda parts: b"".join(piece * n for piece, n in parts))
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**63 - 1), st.floats(allow_nan=False,
                    allow_infinity=False), st.text(max_size=20))
documents = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=5),
                                                          st.dictionaries(st.text(max_size=8), inner, max_size=5)),
                         max_leaves=30)


@settings(max_examples=300, deadline=None)
@given(nasty_text)
def test_strings_are_found_as_a_reader_from_the_left_finds_them(raw):
    assert without_strings(raw) == strings_removed(raw)


@settings(max_examples=300, deadline=None)
@given(st.one_of(nasty_text, documents.map(lambda d: json.dumps(d).encode())), st.booleans())
def test_it_takes_and_refuses_what_the_strict_standard_reading_does(raw, yielding):
    assert ours(raw, yielding=yielding) == reference(raw)


@settings(max_examples=200, deadline=None)
@given(documents, st.integers(0, 60))
def test_a_value_count_refuses_only_text_with_more_than_it_allows(document, max_values):
    raw = json.dumps(document).encode()
    expected = reference(raw) if count_values(without_strings(raw)) <= max_values else None
    assert ours(raw, max_values) == expected


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(NASTY), st.integers(1_000, 30_000)), min_size=1, max_size=4),
       st.sampled_from([None, 10, 200_000]))
def test_text_built_from_long_runs_is_answered_like_any_other(parts, max_values):
    """Runs of tens of thousands of quotes, backslashes and brackets: a quadratic step would
    keep this test from ending (each example once took seconds to minutes)."""
    raw = b"".join(piece * n for piece, n in parts)
    answer = ours(raw, max_values)
    assert ours(raw, max_values, yielding=True) == answer
    if max_values is None:
        assert answer == reference(raw)
    elif count_values(without_strings(raw)) > max_values:
        assert answer is None


def the_372_byte_body() -> bytes:
    """200,001 commas (over the count, so the strings are looked for), then an unclosed string of
    24,000 escaped quotes: 372 bytes of gzip from the issue."""
    return b"," * 200_001 + b'"' + b'\\"' * 24_000


def test_the_372_byte_body_is_refused_at_once():
    raw = the_372_byte_body()
    assert len(gzip.compress(raw, 9)) < 400
    answers: list = []
    worker = threading.Thread(target=lambda: answers.append(ours(raw, 200_000)), daemon=True)
    worker.start()
    worker.join(30)  # generous: linear, it takes milliseconds; the old pattern took 7 to 28 s
    assert answers == [None]


@pytest.mark.parametrize("raw, words", [
    (b'{"a": 1, "a": 2}', "duplicate key 'a'"),
    (b'{"a": {"b": 1, "c": {"b": 2, "b": 3}}}', "duplicate key 'b'"),
    (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), "nested too deeply"),
    (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
    (b'{"a": NaN}', "not valid JSON"),
    (b'\xff{}', "not valid UTF-8"),
])
def test_a_refusal_says_why(raw, words):
    with pytest.raises(BadBody, match=words):
        parse_json(raw)


def test_a_parse_that_gives_way_calls_back_as_it_goes_and_answers_the_same():
    calls = []
    raw = json.dumps({"changes": [{"seq": n, "fields": {"note": "x" * 10}} for n in range(2_000)]}).encode()
    assert parse_json(raw, 200_000, give_way=lambda: calls.append(1)) == parse_json(raw, 200_000)
    assert len(calls) == 4_001 // 256


def test_what_only_the_standard_reading_takes_is_still_taken():
    # A lone surrogate and a number past a float: the checks after parsing refuse them by field.
    assert parse_json(rb'{"a": "\ud800", "b": 1e400}') == {"a": "\ud800", "b": float("inf")}
    assert parse_json(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH) is not None

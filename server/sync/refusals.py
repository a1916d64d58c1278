"""This device's changes the hub refused, as the device keeps them: the refusal's code and
fields as the hub answered them (core/changes.REFUSALS), beside its sentence.

A hub older than refusal codes answers with the sentence alone, and a device older than them
kept that sentence alone in its quarantine. Both are read here, and only here: the one place a
refusal's sentence is parsed, for those hubs and those entries."""

from __future__ import annotations

import re
from typing import Any, Mapping

from server.core.changes import Refusal, refusal_in

HUB_SAID = "refused by the hub: "  # how the device's quarantine words a refusal the hub made
# The one sentence of an older hub that a device acts on (changes._stamp_problem's, before codes).
OLD_HUB_CLOCK_AHEAD = re.compile(r"^hlc is (\d+) s ahead of this clock \(the limit is (\d+) s\)$")


def refused_by_hub(answer: Mapping[str, Any]) -> Refusal:
    """What the device keeps of one entry of a push answer's `quarantined`."""
    said = str(answer.get("reason"))
    refusal = refusal_in(answer) or from_an_old_hub(said)
    return Refusal(refusal.code, HUB_SAID + said, refusal.detail)


def held_refusal(entry: Mapping[str, Any]) -> Refusal | None:
    """The refusal a quarantine entry of this device holds; one the hub refused that was kept
    before codes (its sentence alone) read as an old hub's sentence; None for any other entry
    kept before codes."""
    refusal = refusal_in(entry)
    reason = entry.get("reason")
    if refusal is not None or not isinstance(reason, str) or not reason.startswith(HUB_SAID):
        return refusal
    old = from_an_old_hub(reason[len(HUB_SAID):])
    return Refusal(old.code, reason, old.detail)


def from_an_old_hub(sentence: str) -> Refusal:
    """A refusal from a hub that sent no code: the clock's, read off its sentence, or
    `unclassified` (nothing a device acts on)."""
    found = OLD_HUB_CLOCK_AHEAD.match(sentence)
    if found is None:
        return Refusal("unclassified", sentence)
    return Refusal("clock_ahead", sentence, {"aheadSeconds": int(found[1]), "limitSeconds": int(found[2])})

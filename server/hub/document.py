"""The hub protocol's OpenAPI document (`/hub/v1/openapi.json`): its schemas, and the document
built from the hub's route table with the same builder as the device API's (openapi.py)."""

from __future__ import annotations

from typing import Any

from server.core.changes import REFUSALS
from server.web.openapi import COMMON_SCHEMAS, ID, Operation, operation_object, ref

# A refusal's code, with the fields it carries beside it (core/changes.REFUSALS); absent from
# an answer of a hub older than codes.
REFUSAL_CODE = {"type": "string", "description": "what code reads: " + "; ".join(
    f"{code}" + (f" ({', '.join(fields)})" if fields else "") for code, fields in REFUSALS.items())}
ORIGIN = {"type": "string", "minLength": 1, "maxLength": 128}
SEQ = {"type": "integer", "minimum": 0, "maximum": 2**53 - 1}
HUB_SCHEMAS = {
    "HubPairRequest": {"type": "object", "additionalProperties": False, "required": ["code"], "properties": {
        "code": {"type": "string", "pattern": "^csi_", "maxLength": 200,
                 "description": "the pairing code: the fragment of an invitation (`hub invite`)"}}},
    "HubPaired": {"type": "object", "required": ["userId", "deviceId", "token"], "properties": {
        "userId": {"type": "string"}, "deviceId": {"type": "string"},
        "token": {"type": "string", "description": "the device's token, replacing any an earlier exchange gave"}}},
    "HubEpoch": {"type": "object", "required": ["epoch", "userId", "deviceId"],
                 "properties": {"epoch": {"type": "string"}, "userId": {"type": "string"},
                                "deviceId": {"type": "string", "description": "the token's device"},
                                "features": {"type": "array", "items": {"type": "string"},
                                             "description": "calls beyond the first protocol: shortfall, relay, "
                                                            "resume, wait, snapshot, heal, healLog (a heal's logAs, "
                                                            "and a relay's owned), pair (POST /pair), round (POST "
                                                            "/round), waitChanges (a wait answered with changes)"}}},
    "HubWaitRequest": {"type": "object", "additionalProperties": False, "properties": {
        "cursor": {"type": "object", "additionalProperties": SEQ, "description": "origin -> last seq held"},
        "excludeOrigin": {**ORIGIN, "nullable": True, "description": "this device's own origin: its changes are "
                                                                     "no news"},
        "seconds": {"type": "number", "minimum": 0, "maximum": 60, "description": "how long to hold the request "
                                                                                 "with no news (default 25)"},
        "limit": {"type": "integer", "minimum": 1, "maximum": 2000, "nullable": True,
                  "description": "feature waitChanges: answer a wake with at most this many changes past the "
                                 "cursor (as a pull with excludeOrigin) and the hub's epoch"},
        "epoch": {"type": "string", "nullable": True, "description": "feature waitChanges: the epoch the cursor "
                                                                     "is in; another epoch wakes at once, answered "
                                                                     "with the epoch only (run a round)"}}},
    "HubWait": {"type": "object", "required": ["changed"], "properties": {
        "changed": {"type": "boolean", "description": "true: the user's log holds a change past the cursor; pull"},
        "epoch": {"type": "string", "description": "with a limit, when changed: the hub's epoch"},
        "changes": {"type": "array", "items": ref("Change"),
                    "description": "with a limit, when changed in the epoch asked about: the first page past the "
                                   "cursor (apply it as a pull; a full page or none: run a round)"}}},
    "HubShortfallRequest": {"type": "object", "additionalProperties": False, "properties": {
        "cursor": {"type": "object", "additionalProperties": SEQ, "description": "origin -> last seq acknowledged"}}},
    "HubShortfall": {"type": "object", "required": ["shortfall", "rollbacks"], "properties": {
        "shortfall": {"type": "object", "additionalProperties": SEQ,
                      "description": "origin -> the hub's newest seq, where it holds less than the cursor"},
        "rollbacks": {"type": "array", "maxItems": 10, "description": "the user's last findings of a hub holding "
                                                                      "less than it acknowledged, oldest first",
                      "items": {"type": "object", "required": ["id", "at", "origins", "changes"], "properties": {
                          "id": {"type": "string"}, "at": {"type": "number", "description": "epoch seconds"},
                          "origins": {"type": "integer"}, "changes": {"type": "integer"}}}},
        "compacted": {"type": "object", "additionalProperties": SEQ,
                      "description": "origin -> the newest seq compacted out of the hub's log, for each origin of "
                                     "which the cursor lacks part of that: catch up with /snapshot first"},
        "floors": {"type": "object", "additionalProperties": SEQ,
                   "description": "origin -> the newest seq compacted out of the hub's log, for the compacted "
                                  "origins of the cursor: every device the hub serves has pulled that much, so a "
                                  "device may drop its own copy of it (a hub that later loses it is healed from the "
                                  "devices' records, /heal)"}}},
    "HubHealRequest": {"type": "object", "additionalProperties": False, "required": ["records"], "properties": {
        "records": {"type": "array", "maxItems": 2000, "items": {},
                    "description": "A page of this device's records (see Record), for a hub that lost history no "
                                   "device's log still holds; merged by the usual rule, nothing logged. A record "
                                   "that is not a merge state, or whose writes the door refuses, is quarantined"},
        "hold": {"type": "array", "nullable": True, "maxItems": 8, "items": {
                     "type": "object", "additionalProperties": False, "required": ["origin", "seq"],
                     "properties": {"origin": ID, "seq": {**SEQ, "minimum": 1}}},
                 "description": "with the last page: how far the records now hold each of these origins of this "
                                "device's own (a new one is claimed, within the device's quota; one named twice "
                                "is held at the higher seq); each one's top and floor rise to it, so that a device "
                                "below is sent the records"},
        "logAs": {"type": "string", "pattern": "^h[0-9a-f]{12}$", "nullable": True,
                  "description": "this device's heal origin (claimed once, within its quota): what the page changes "
                                 "in the hub's records (per write, the fields it now holds) is logged under it, "
                                 "numbered past its top, with the stamps of the writes, so that every device pulls "
                                 "it. Writes stamped by an origin another device owns (its token not revoked) are "
                                 "not taken: that device gives its own back"}}},
    "HubHealResult": {"type": "object", "required": ["received", "applied", "conflicts", "quarantined", "held"],
                      "properties": {"received": {"type": "integer"}, "applied": {"type": "integer",
                                                                                 "description": "records changed"},
                                     "conflicts": {"type": "integer"},
                                     "held": {"type": "object", "additionalProperties": SEQ},
                                     "logged": {"type": "object", "additionalProperties": SEQ,
                                                "description": "{logAs: the newest seq logged}, when anything was"},
                                     "skipped": {"type": "array", "items": {"type": "string"},
                                                 "description": "origins of writes not taken: other devices' own"},
                                     "quarantined": {"type": "array", "items": {
                                         "type": "object", "required": ["origin", "seq", "reason"],
                                         "properties": {"origin": {**ORIGIN, "nullable": True},
                                                        "seq": {"type": "integer", "nullable": True},
                                                        "reason": {"type": "string", "description": "for people"},
                                                        "code": REFUSAL_CODE}}}}},
    "HubSnapshotRequest": {"type": "object", "additionalProperties": False, "properties": {
        "after": {"type": "array", "nullable": True, "minItems": 2, "maxItems": 2, "items": {"type": "string"},
                  "description": "the `next` of the page before; null for the first page"},
        "limit": {"type": "integer", "minimum": 1, "maximum": 2000}}},
    "Record": {"type": "object", "description": "A record's merge state: each field with the stamp that wrote it and "
                                                "the stamp that write replaced; a tombstone keeps its delete's",
               "required": ["kind", "id", "courseId", "fields", "clocks", "bases", "deleted", "dclock", "dbase"],
               "properties": {"kind": {"type": "string"}, "id": {"type": "string"},
                              "courseId": {"type": "string", "nullable": True}, "fields": {"type": "object"},
                              "clocks": {"type": "object", "additionalProperties": {"type": "string"}},
                              "bases": {"type": "object", "additionalProperties": {"type": "string"}},
                              "deleted": {"type": "boolean"}, "dclock": {"type": "string"},
                              "dbase": {"type": "string"}}},
    "HubSnapshot": {"type": "object", "required": ["cursor", "records", "next"], "properties": {
        "cursor": {"type": "object", "additionalProperties": SEQ,
                   "description": "the hub's newest seq of each origin, read before the records: after the last "
                                  "page, pull from the first page's cursor"},
        "records": {"type": "array", "items": ref("Record")},
        "next": {"type": "array", "nullable": True, "items": {"type": "string"},
                 "description": "`after` for the next page; null after the last"}}},
    "Change": {"type": "object", "description": "One write: checked at the door (kinds, fields, stamps)",
               "required": ["origin", "seq", "hlc", "kind", "id", "courseId", "op", "fields", "bases"],
               "properties": {"origin": ORIGIN, "seq": SEQ, "hlc": {"type": "string"}, "kind": {"type": "string"},
                              "id": {"type": "string"}, "courseId": {"type": "string", "nullable": True},
                              "op": {"type": "string", "enum": ["upsert", "delete"]},
                              "fields": {"type": "object"},
                              "bases": {"type": "object", "additionalProperties": {"type": "string"}}}},
    "HubChanges": {"type": "object", "required": ["changes"],
                   "properties": {"changes": {"type": "array", "items": ref("Change")}}},
    "HubRoundRequest": {"type": "object", "additionalProperties": False, "required": ["origin"], "properties": {
        "cursor": {"type": "object", "additionalProperties": SEQ, "description": "origin -> last seq held"},
        "origin": {**ORIGIN, "description": "this device's own origin"},
        "limit": {"type": "integer", "minimum": 1, "maximum": 2000, "description": "of each page (default 500)"}}},
    "HubRound": {"type": "object", "required": ["epoch", "userId", "deviceId", "features", "shortfall", "rollbacks",
                                                "own", "changes"],
                 "description": "HubEpoch and HubShortfall in one, with two pages: feature round",
                 "properties": {"epoch": {"type": "string"}, "userId": {"type": "string"},
                                "deviceId": {"type": "string"}, "features": {"type": "array",
                                                                             "items": {"type": "string"}},
                                "shortfall": {"type": "object", "additionalProperties": SEQ},
                                "rollbacks": {"type": "array", "items": {"type": "object"}},
                                "compacted": {"type": "object", "additionalProperties": SEQ},
                                "floors": {"type": "object", "additionalProperties": SEQ},
                                "own": {"type": "array", "items": ref("Change"),
                                        "description": "the hub's part of `origin` past the cursor (normally "
                                                       "none), as a pull with onlyOrigin answers it"},
                                "changes": {"type": "array", "items": ref("Change"),
                                            "description": "the first page of the other origins' changes past the "
                                                           "cursor, as a pull with excludeOrigin answers it"}}},
    "HubPullRequest": {"type": "object", "additionalProperties": False, "properties": {
        "cursor": {"type": "object", "additionalProperties": SEQ, "description": "origin -> last seq held"},
        "limit": {"type": "integer", "minimum": 1, "maximum": 2000},
        "excludeOrigin": {**ORIGIN, "nullable": True}, "onlyOrigin": {**ORIGIN, "nullable": True}}},
    "HubPushRequest": {"type": "object", "additionalProperties": False, "required": ["changes"], "properties": {
        "changes": {"type": "array", "maxItems": 2000, "items": {},
                    "description": "Changes (see Change); anything else is quarantined with its reason"},
        "relay": {"type": "boolean", "description": "other origins' changes the hub lost: only what it lacks is "
                                                    "taken, no origin is claimed, and nothing of an origin another "
                                                    "device owns whose token is not revoked (see owned)"}}},
    "HubPushResult": {"type": "object", "required": ["received", "applied", "conflicts", "quarantined"],
                      "properties": {"received": {"type": "integer"}, "applied": {"type": "integer"},
                                     "conflicts": {"type": "integer"},
                                     "resume": {"type": "object", "additionalProperties": SEQ,
                                                "description": "origin -> the hub's top, for an origin whose "
                                                               "changes started past it: send again from there"},
                                     "owned": {"type": "object", "additionalProperties": SEQ,
                                               "description": "a relay: origin -> the hub's top, for the origins "
                                                              "another device owns: none of their changes was taken; "
                                                              "that device gives them back itself"},
                                     "quarantined": {"type": "array", "items": {
                                         "type": "object", "required": ["origin", "seq", "reason"],
                                         "properties": {"origin": {**ORIGIN, "nullable": True},
                                                        "seq": {"type": "integer", "nullable": True},
                                                        "reason": {"type": "string", "description": "for people"},
                                                        "code": REFUSAL_CODE}}}}},
}


def build_hub_document(operations: list[Operation]) -> dict[str, Any]:
    """The hub protocol (`python -m server --hub`): every call but this document needs a device token."""
    paths: dict[str, dict] = {}
    for op in operations:
        paths.setdefault(op.document_path, {})[op.method] = operation_object(op, True, hub=True)
    return {
        "openapi": "3.0.3",
        "info": {"title": "coursesync hub protocol", "version": "1.0.0",
                 "description": "What devices sync through: the epoch, pull after a cursor, push a batch. "
                                "Bodies may be gzip-compressed (Content-Encoding: gzip)."},
        "servers": [{"url": "/hub/v1"}],
        "paths": paths,
        "components": {"schemas": {**COMMON_SCHEMAS, **HUB_SCHEMAS},
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }

"""What a person does with a value that lost a merge: write it back (a normal edit: stamped now,
synced to every device, winning by the usual rule), or dismiss it. Either way the conflict
stays listed, with how it was resolved."""

from __future__ import annotations

from typing import Any

from server.connectors.base import DatabaseConnector
from server.core.errors import NotFound, StateConflict, ValidationError
from server.core.merge import DELETED
from server.core.records import KINDS, USER, validate
from server.core.times import iso_now


def _open_conflict(store: DatabaseConnector, conflict_id: str) -> dict[str, Any]:
    conflict = store.get_conflict(conflict_id)
    if conflict is None:
        raise NotFound("No such conflict.", code="conflict_not_found")
    if conflict["resolution"] is not None:
        raise StateConflict(f"This conflict was already {conflict['resolution']['action']}.", code="conflict_resolved")
    return conflict


def losing_value(conflict: dict[str, Any]) -> Any:
    return conflict["remoteValue"] if conflict["winner"] == "local" else conflict["localValue"]


def restore(store: DatabaseConnector, conflict_id: str) -> dict[str, Any]:
    """Write the losing value back and mark the conflict restored; returns the record."""
    conflict = _open_conflict(store, conflict_id)
    kind, field, value = conflict["kind"], conflict["field"], losing_value(conflict)
    if value == DELETED:
        raise StateConflict("The losing side was a deletion; delete the record again instead.", code="not_restorable")
    try:
        if kind == USER:
            record = _restore_user(store, field, value)
        else:
            fields = validate(kind, {field: value}, "update")
            record = store.update(kind, conflict["courseId"] if KINDS[kind].parent else None,
                                  conflict["recordId"], fields)
    except ValidationError:
        raise StateConflict(f"The value of {field!r} cannot be written back through the API.",
                       code="not_restorable") from None
    except NotFound:
        raise StateConflict(f"The {kind} this value belonged to has been deleted since: there is nothing to "
                       "restore it into.", code="record_deleted") from None
    edit = _the_edit(store, conflict)
    store.resolve_conflict(conflict_id, {"action": "restored", "at": iso_now(), "value": value, "edit": edit})
    return record


def _restore_user(store: DatabaseConnector, field: str, value: Any) -> dict[str, Any]:
    if field == "displayName":
        return store.update_user_profile(value)
    if field == "focusCourseId":
        return store.set_focus_course(value)
    raise ValidationError({field: "not editable"})


def _the_edit(store: DatabaseConnector, conflict: dict[str, Any]) -> dict[str, Any] | None:
    """The change the restore wrote: the newest of this store's own that wrote that field of
    that record (another request may have written in between)."""
    own = store.origin
    top, _ = store.pending_since({}, origin=own)
    for ch in reversed(store.changes_since({own: max(0, top - 20)}, 20, only_origin=own)):
        if (ch["kind"], ch["id"]) == (conflict["kind"], conflict["recordId"]) and conflict["field"] in ch["fields"]:
            return {"origin": ch["origin"], "seq": ch["seq"], "hlc": ch["hlc"]}
    return None


def dismiss(store: DatabaseConnector, conflict_id: str) -> dict[str, Any]:
    _open_conflict(store, conflict_id)
    resolved = store.resolve_conflict(conflict_id, {"action": "dismissed", "at": iso_now()})
    if resolved is None:  # gone since it was read: as if it had never been there
        raise NotFound("No such conflict.", code="conflict_not_found")
    return resolved

"""A SQLite store file checked at the door, and SQLite's failures in words a person can act on:
a file that is another program's, newer than this code or damaged is refused before anything
writes to it."""

from __future__ import annotations

import logging
import os
import sqlite3
import time

from server.connectors.sqlite.schema import APPLICATION_ID, OUR_TABLES, SCHEMA_STEPS
from server.core.errors import StoreUnavailable

QUICK_CHECK_SECONDS = 2.0  # a big store is checked as far as this allows at start-up
log = logging.getLogger("server.store")

# What a person can do something about, by SQLite's result code; the rest say only the class.
SQLITE_PROBLEMS = {
    "SQLITE_FULL": "the disk is full",
    "SQLITE_NOTADB": "the file is not a SQLite store",
    "SQLITE_CORRUPT": "the store file is damaged",
    "SQLITE_READONLY": "the store file is read-only",
    "SQLITE_CANTOPEN": "the store file cannot be opened",
    "SQLITE_IOERR": "the disk failed to read or write",
    "SQLITE_BUSY": "another program holds the store locked",
}


# Problems a person fixes where the file is: the advice said with them.
WHERE_THE_FILE_IS = ("SQLITE_READONLY", "SQLITE_CANTOPEN")


def describe(exc: BaseException, opening: bool = False) -> StoreUnavailable:
    """A driver error as the store's failure, named when a person can do something about it;
    `opening` (start-up): with what to do where the file's place is the problem. No path: the
    caller that knows the setting names it (api.py, at start-up)."""
    name = getattr(exc, "sqlite_errorname", "")
    problem = next((text for code, text in SQLITE_PROBLEMS.items() if name.startswith(code)), None)
    if problem is None and isinstance(exc, OSError):
        problem = exc.strerror and exc.strerror.lower()
    advice = ""
    if opening and (name.startswith(WHERE_THE_FILE_IS) or isinstance(exc, OSError)):
        advice = "; make the file and its folder writable by this user, or set SQLITE_PATH to a file elsewhere"
    return StoreUnavailable(f"The SQLite store failed: {problem or exc.__class__.__name__}{advice}.")


def make_folder(directory: str) -> None:
    """The store's folder, made if missing; else a sentence naming it and why."""
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        if isinstance(exc, FileExistsError) and exc.filename:
            why = f"{exc.filename} is a file, not a folder"
        elif isinstance(exc, (FileExistsError, NotADirectoryError)):
            why = "a part of that path is a file, not a folder"
        else:
            why = (exc.strerror or exc.__class__.__name__).lower()
        raise StoreUnavailable(f"The SQLite store's folder {directory} cannot be made ({why}): set SQLITE_PATH to "
                               "a file in a folder this user may write.") from None


class StoreRefused(StoreUnavailable):
    """The store file is not one this code may open: refused before anything touches it."""

    code = "store_refused"


def check_store_file(path: str) -> None:
    """Refuse, with the file and the problem named, a file that is not a SQLite database, is
    another program's, has a schema newer than this code, or fails SQLite's quick check. Opens
    it read-only, so a refused file's bytes are unchanged. A missing or empty file passes."""
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        return  # nothing yet, or not a file: opening it says what is wrong
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        problem = _file_problem(conn)
    except sqlite3.DatabaseError as exc:
        problem = f"is not a SQLite store this server can read ({exc})"
    finally:
        conn.close()
    if problem:
        raise StoreRefused(f"{path}: {problem}")


def _file_problem(conn: sqlite3.Connection) -> str | None:
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if app_id not in (0, APPLICATION_ID):
        return f"belongs to another program (application_id {app_id:#x})"
    if app_id == 0 and tables and not OUR_TABLES <= tables:
        return "is another program's SQLite file (it has none of this server's tables)"
    newest = max((step for step, _ in SCHEMA_STEPS), default=0)
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    stored = conn.execute("SELECT MAX(step) FROM schema_steps").fetchone()[0] if "schema_steps" in tables else 0
    if max(version, stored or 0) > newest:
        return f"has schema step {max(version, stored)}, newer than this server knows ({newest}): upgrade the server"
    return _quick_check(conn)


def _quick_check(conn: sqlite3.Connection) -> str | None:
    deadline = time.monotonic() + QUICK_CHECK_SECONDS
    conn.set_progress_handler(lambda: time.monotonic() > deadline, 10_000)
    try:
        result = conn.execute("PRAGMA quick_check(1)").fetchone()[0]
    except sqlite3.OperationalError:  # interrupted: a big file, checked only in part
        log.info("the store's quick check took over %.0f s and was cut short", QUICK_CHECK_SECONDS)
        return None
    finally:
        conn.set_progress_handler(None, 0)
    if result == "ok":
        return None
    # SQLite's report spans lines ("*** in database main ***", then the page): one line here.
    detail = " ".join(part for part in result.split() if part != "***")
    return f"is damaged (SQLite's quick check: {detail[:200]}); restore a backup or point SQLITE_PATH elsewhere"

"""A store file that is not ours to open is refused at start-up, untouched, with the file and the
problem named: another program's SQLite file, a newer schema, a damaged page, not SQLite at all."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading

import pytest

from server.connectors.factory import get_db_connector
from server.connectors.sqlite.files import StoreRefused
from server.connectors.sqlite.schema import APPLICATION_ID, SCHEMA_STEPS
from server.core.config import Settings
from tests.procs import ROOT, ServerProcess
from tests.synckit import course


def make_store(path) -> None:
    conn = get_db_connector("sql", Settings(), path=str(path), user_id="u")
    conn.connect()
    for i in range(200):
        course(conn, id=f"c{i}", title="x" * 200)
    conn.close()
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw.execute("PRAGMA journal_mode = DELETE")  # everything in the one file, to compare its bytes
    raw.close()


def sqlite_file(path, *statements: str):
    raw = sqlite3.connect(path)
    for statement in statements:
        raw.execute(statement)
    raw.commit()
    raw.close()
    return path


def refused(path) -> str:
    before = path.read_bytes()
    conn = get_db_connector("sql", Settings(), path=str(path))
    with pytest.raises(StoreRefused) as err:
        conn.connect()
    conn.close()
    assert path.read_bytes() == before, "a refused file was modified"
    assert not (path.parent / (path.name + "-wal")).exists()
    assert err.value.message.startswith(f"{path}: ")
    return err.value.message.removeprefix(f"{path}: ")


def test_another_programs_sqlite_file_is_refused_untouched(tmp_path):
    path = sqlite_file(tmp_path / "photos.db", "CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT)",
                       "INSERT INTO photos (name) VALUES ('holiday.jpg')")
    assert refused(path) == "is another program's SQLite file (it has none of this server's tables)"


def test_a_file_stamped_by_another_program_is_refused(tmp_path):
    path = sqlite_file(tmp_path / "other.db", "PRAGMA application_id = 1234", "CREATE TABLE meta (key TEXT)")
    assert refused(path) == "belongs to another program (application_id 0x4d2)"


@pytest.mark.parametrize("how", ["user_version", "schema_steps"])
def test_a_store_with_a_newer_schema_is_refused_untouched(tmp_path, how):
    path = tmp_path / "store.sqlite3"
    make_store(path)
    raw = sqlite3.connect(path)
    if how == "user_version":
        raw.execute("PRAGMA user_version = 99")
    else:
        raw.execute("INSERT INTO schema_steps VALUES (99, 'later')")
    raw.commit()
    raw.close()
    newest = len(SCHEMA_STEPS)
    assert refused(path) == f"has schema step 99, newer than this server knows ({newest}): upgrade the server"


def test_a_store_with_a_damaged_page_is_refused_untouched(tmp_path):
    path = tmp_path / "store.sqlite3"
    make_store(path)
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 8 * page
    data[5 * page + 100:5 * page + 400] = b"\xff" * 300  # the middle of a page of records
    path.write_bytes(bytes(data))
    reason = refused(path)
    assert reason.startswith("is damaged (SQLite's quick check: ") and "\n" not in reason and "***" not in reason
    assert reason.endswith("); restore a backup or point SQLITE_PATH elsewhere")


def test_a_file_that_is_not_sqlite_is_refused_untouched(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("these are my notes, not a database\n" * 200)
    assert refused(path).startswith("is not a SQLite store this server can read (file is not a database)")


def test_a_new_store_is_stamped_and_an_older_one_of_ours_is_stamped_when_it_upgrades(tmp_path):
    path = tmp_path / "store.sqlite3"
    make_store(path)
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert raw.execute("PRAGMA user_version").fetchone()[0] == len(SCHEMA_STEPS)
    raw.execute("PRAGMA application_id = 0")  # as a store made before the stamp existed
    raw.execute("PRAGMA user_version = 0")
    raw.execute("DELETE FROM schema_steps WHERE step = 3")
    raw.commit()
    raw.close()
    conn = get_db_connector("sql", Settings(), path=str(path), user_id="u")
    conn.connect()
    assert len(conn.get_courses()) == 200
    assert conn.pool.get().execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    conn.close()


def test_the_server_refuses_a_foreign_file_with_one_line(tmp_path):
    path = sqlite_file(tmp_path / "photos.db", "CREATE TABLE photos (id INTEGER PRIMARY KEY)")
    srv = ServerProcess(tmp_path, SQLITE_PATH=str(path))
    proc = subprocess.run([sys.executable, "-m", "server"], cwd=ROOT, env=srv.env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: cannot open the sql store: {path}: is another program's SQLite file (it has none of this "
        "server's tables)"]


def test_a_hubs_stores_per_user_check_the_file_once_and_open_without_the_write_lock(tmp_path, monkeypatch):
    """A hub keeps a store per user on one file: the file is checked once in the process (a quick
    check reads all of it), and opening a user's store reads its meta without waiting for a writer."""
    from server.connectors.sqlite import backend as sql
    from server.connectors.sqlite import files as sql_files
    from server.hub.stores import HubStores

    checked = []
    monkeypatch.setattr(sql, "check_store_file", lambda path: (checked.append(path), sql_files.check_store_file(path)))
    path = tmp_path / "hub.sqlite3"
    base = get_db_connector("sql", Settings(), path=str(path))
    base.connect()
    stores = HubStores(Settings(sqlite_path=str(path)), base, limit=8)
    writing, done, opened = threading.Event(), threading.Event(), []

    def writer():  # another thread in the writer section: an open must not wait for it
        with base.pool.write_lock:
            writing.set()
            done.wait(60)

    def opener():
        for n in range(40):  # five times the cache: most are opened again
            store = stores.for_user(f"user{n % 20}")
            opened.append(store.user_id == f"user{n % 20}" and store.origin == base.origin)

    try:
        threading.Thread(target=writer, daemon=True).start()
        writing.wait(10)
        worker = threading.Thread(target=opener, daemon=True)
        worker.start()
        worker.join(60)
        done.set()
        assert opened == [True] * 40 and checked == [str(path)]
        course(stores.for_user("user3"), id="c1")
        assert [c["id"] for c in stores.for_user("user3").get_courses()] == ["c1"]
    finally:
        done.set()
        stores.close()
        base.close()

"""Settings: every one read from the environment, a bad value named in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from server.core.config import ConfigError, load_settings, redact_uri

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_listen_on_loopback_with_sql_and_no_hub():
    s = load_settings({})
    assert (s.host, s.db_connector, s.hub_enabled) == ("127.0.0.1", "sql", False)
    assert "http://localhost:5173" in s.cors_origins and "*" not in s.cors_origins


def test_every_setting_is_read():
    s = load_settings({
        "DB_CONNECTOR": "mongo", "SQLITE_PATH": "/tmp/x.db", "MONGO_URI": "mongodb://h:1",
        "MONGO_DB": "hubdb", "USER_ID": "u1", "DEVICE_ID": "laptop", "SYNC_INTERVAL_SECONDS": "2.5",
        "SYNC_BATCH_SIZE": "50", "HOST": "0.0.0.0", "PORT": "9000", "CORS_ORIGINS": "https://a.b",
        "ALLOWED_HOSTS": "a.local,B.local", "API_TOKEN": "x" * 20, "LOG_LEVEL": "debug",
        "HUB_TIMEOUT_MS": "1500", "SYNC_PROCESS": "0",
    })
    assert (s.db_connector, s.sqlite_path, s.mongo_uri, s.mongo_db) == ("mongo", "/tmp/x.db", "mongodb://h:1", "hubdb")
    assert (s.user_id, s.origin, s.sync_interval_seconds, s.sync_batch_size) == ("u1", "laptop", 2.5, 50)
    assert (s.host, s.port, s.cors_origins) == ("0.0.0.0", 9000, ("https://a.b",))
    assert s.allowed_hosts == ("a.local", "b.local")
    assert (s.api_token, s.log_level) == ("x" * 20, "DEBUG")
    assert (s.hub_timeout_ms, s.sync_process) == (1500, False)
    assert load_settings({}).sync_process is True


@pytest.mark.parametrize("env,name", [
    ({"DB_CONNECTOR": "postgres"}, "DB_CONNECTOR"),
    ({"PORT": "eighty"}, "PORT"),
    ({"PORT": "70000"}, "PORT"),
    ({"SYNC_BATCH_SIZE": "0"}, "SYNC_BATCH_SIZE"),
    ({"SYNC_INTERVAL_SECONDS": "-1"}, "SYNC_INTERVAL_SECONDS"),
    ({"MONGO_URI": "http://x"}, "MONGO_URI"),
    ({"CORS_ORIGINS": "*"}, "CORS_ORIGINS"),
    ({"LOG_LEVEL": "loud"}, "LOG_LEVEL"),
    ({"USER_ID": "a/b"}, "USER_ID"),
    ({"API_TOKEN": "short"}, "API_TOKEN"),
    ({"DB_CONNECTOR": "mongo"}, "MONGO_URI"),
    ({"SYNC_PROCESS": "maybe"}, "SYNC_PROCESS"),
    ({"HUB_TIMEOUT_MS": "5"}, "HUB_TIMEOUT_MS"),
])
def test_a_bad_value_names_the_setting(env, name):
    with pytest.raises(ConfigError, match=name):
        load_settings(env)


def test_dotenv_values_are_read_and_the_environment_wins(tmp_path, monkeypatch):
    env_file = tmp_path / ".env"
    env_file.write_text("PORT=9100\nSYNC_BATCH_SIZE=7\n")
    monkeypatch.setenv("PORT", "9200")
    s = load_settings(dotenv_path=str(env_file))
    assert s.port == 9200 and s.sync_batch_size == 7


def test_passwords_are_redacted():
    assert redact_uri("mongodb://bob:s3cret@h:27017/db?x=1") == "mongodb://bob:***@h:27017/db?x=1"
    assert "s3cret" not in redact_uri("mongodb+srv://bob:s3cret@cluster.example.net")
    assert redact_uri("mongodb://h:1") == "mongodb://h:1"


def test_the_server_refuses_a_bad_setting_with_one_line(tmp_path):
    env = {**os.environ, "PORT": "nope", "SQLITE_PATH": str(tmp_path / "x.db")}
    proc = subprocess.run([sys.executable, "-m", "server"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: bad setting: PORT must be an integer, got 'nope'"]


def test_a_bad_mongo_uri_never_shows_its_password(tmp_path):
    env = {**os.environ, "MONGO_URI": "postgres://bob:hunter2@h", "SQLITE_PATH": str(tmp_path / "x.db")}
    proc = subprocess.run([sys.executable, "-m", "server"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "MONGO_URI" in proc.stderr and "hunter2" not in proc.stderr


def test_the_settings_page_lists_exactly_the_settings_the_server_reads():
    from server.core.config import SETTINGS, Settings, settings_table

    assert settings_table() in (ROOT / "docs" / "settings.md").read_text()
    assert {s.attr for s in SETTINGS} == set(Settings.__dataclass_fields__) - {"warnings"}
    literal = [(s, s.default.strip("`")) for s in SETTINGS if s.default.startswith("`")]
    described = {s.name for s in SETTINGS if not s.default.startswith("`")}
    assert described == {"MONGO_URI", "USER_ID", "DEVICE_ID", "CORS_ORIGINS", "API_TOKEN", "HUB_URL", "HUB_TOKEN",
                         "HUB_METRICS_TOKEN", "HUB_PUBLIC_URL"}
    for setting, text in literal:  # a default the page spells out is the default the server uses
        assert setting.parse(setting.name, text) == getattr(Settings(), setting.attr), setting.name


@pytest.mark.parametrize("env, words", [
    ({"HUB_URL": "http://hub.example.org", "HUB_TOKEN": "t" * 20}, "https"),
    ({"HUB_URL": "https://u:p@hub.example.org", "HUB_TOKEN": "t" * 20}, "no password"),
    ({"HUB_URL": "ftp://hub.example.org", "HUB_TOKEN": "t" * 20}, "HUB_URL"),
    ({"HUB_URL": "https://hub.example.org:x", "HUB_TOKEN": "t" * 20}, "HUB_URL"),
    ({"HUB_URL": "https://hub.example.org"}, "HUB_TOKEN"),
    ({"HUB_TOKEN": "t" * 20}, "HUB_URL"),
    ({"HUB_URL": "https://hub.example.org", "HUB_TOKEN": "t" * 20, "MONGO_URI": "mongodb://h"}, "MONGO_URI"),
])
def test_hub_url_settings_are_checked(env, words):
    from server.core.config import ConfigError, load_settings

    with pytest.raises(ConfigError, match=words):
        load_settings(env)


def test_a_hub_on_loopback_may_use_plain_http():
    from server.core.config import load_settings

    for url in ("http://127.0.0.1:8100", "http://localhost:8100/", "http://[::1]:8100", "https://hub.example.org/x"):
        settings = load_settings({"HUB_URL": url, "HUB_TOKEN": "t" * 20})
        assert settings.hub_enabled and settings.hub_url == url.rstrip("/") and settings.hub_address == settings.hub_url


def test_a_hub_address_with_the_protocol_path_on_it_is_understood():
    """The hub's start-up line prints http://host:port/hub/v1; pasted as HUB_URL it names the hub."""
    for url in ("http://127.0.0.1:8100/hub/v1", "http://127.0.0.1:8100/hub/v1/", "http://127.0.0.1:8100/api/v1"):
        assert load_settings({"HUB_URL": url, "HUB_TOKEN": "t" * 20}).hub_url == "http://127.0.0.1:8100"
    deep = load_settings({"HUB_URL": "https://example.org/sync/hub/v1", "HUB_TOKEN": "t" * 20})
    assert deep.hub_url == "https://example.org/sync"


def test_a_name_in_the_env_file_that_is_not_a_setting_is_named_with_the_nearest_one(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("PROT=8010\nSYNC_INTERVAL_SECOND=5\nport=\nPORT=8011\nCOLOUR=blue\n")
    settings = load_settings(dotenv_path=str(env_file))
    where = f"(in {env_file})"
    assert settings.port == 8011 and settings.sync_interval_seconds == 30.0
    assert settings.warnings == (f"PROT {where}: not a setting, ignored; did you mean PORT?",
                                 f"SYNC_INTERVAL_SECOND {where}: not a setting, ignored; did you mean "
                                 "SYNC_INTERVAL_SECONDS?",
                                 f"port {where}: not a setting, ignored; did you mean PORT?",
                                 f"COLOUR {where}: not a setting, ignored; docs/settings.md lists the settings")


def test_only_near_misses_of_the_environment_are_named():
    """The environment holds every program's variables: only one a letter or so from a setting is ours."""
    env = {"SYNC_LIVEE": "0", "HOSTNAME": "box", "USER": "ann", "SYNC_PROPERTY_EXAMPLES": "5", "LOGNAME": "ann",
           "HOME": "/root", "PATH": "/usr/bin", "PORT": "8001"}
    settings = load_settings(env)
    assert settings.warnings == ("SYNC_LIVEE (in the environment): not a setting, ignored; did you mean SYNC_LIVE?",)
    assert settings.port == 8001 and settings.sync_live is True


def test_a_misspelt_setting_is_said_at_start_up(tmp_path):
    from tests.procs import ServerProcess

    srv = ServerProcess(tmp_path, "typo", SYNC_LIVEE="0")
    try:
        srv.start()
        said = srv.log_path.read_text()
    finally:
        srv.stop()
    assert "warning: SYNC_LIVEE (in the environment): not a setting, ignored; did you mean SYNC_LIVE?" in said

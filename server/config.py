"""Every setting, read once from the environment and an optional `.env` file. Pure apart from
reading those two; a bad value raises ConfigError naming the setting."""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from server.records import ID_RE

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEFAULT_CORS = (
    "http://localhost:5173,http://127.0.0.1:5173,"  # Vite dev server
    "http://localhost:4173,http://127.0.0.1:4173"  # Vite preview
)


class ConfigError(ValueError):
    """A setting has a bad value. The message is one line naming it."""


def redact_uri(uri: str | None) -> str:
    """The URI with any password replaced by `***`."""
    if not uri:
        return ""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return "<unparseable URI>"
    if parts.password is None and "@" not in parts.netloc:
        return uri
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}" if user else f"***@{host}"))


@dataclass(frozen=True)
class Settings:
    db_connector: str = "sql"
    sqlite_path: str = "var/courses.sqlite3"
    mongo_uri: str | None = None
    mongo_db: str = "coursesync"
    user_id: str | None = None
    device_id: str | None = None
    sync_interval_seconds: float = 30.0
    sync_batch_size: int = 500
    host: str = "127.0.0.1"
    port: int = 8000
    cors_origins: tuple[str, ...] = tuple(DEFAULT_CORS.split(","))
    allowed_hosts: tuple[str, ...] = ("localhost", "127.0.0.1", "[::1]", "::1")
    api_token: str | None = None
    log_level: str = "INFO"
    hub_timeout_ms: int = 3000
    sync_process: bool = True  # run sync rounds in a child process (see server/sync/child.py)

    @property
    def hub_enabled(self) -> bool:
        return bool(self.mongo_uri)


def _int(name: str, raw: str, low: int, high: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _list(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def load_settings(env: dict[str, str] | None = None, dotenv_path: str | None = ".env") -> Settings:
    """Settings from `env` (default: os.environ over the values of `.env`)."""
    if env is None:
        env = {}
        if dotenv_path and os.path.exists(dotenv_path):
            from dotenv import dotenv_values

            env.update({k: v for k, v in dotenv_values(dotenv_path).items() if v is not None})
        env.update(os.environ)
    get = lambda name: (env.get(name) or "").strip() or None  # noqa: E731
    kw: dict = {}
    if (v := get("DB_CONNECTOR")) is not None:
        if v not in ("sql", "mongo"):
            raise ConfigError(f"DB_CONNECTOR must be 'sql' or 'mongo', got {v!r}")
        kw["db_connector"] = v
    if (v := get("SQLITE_PATH")) is not None:
        kw["sqlite_path"] = v
    if (v := get("MONGO_URI")) is not None:
        if not v.startswith(("mongodb://", "mongodb+srv://")):
            raise ConfigError(f"MONGO_URI must start with mongodb:// or mongodb+srv://, got {redact_uri(v)!r}")
        kw["mongo_uri"] = v
    if (v := get("MONGO_DB")) is not None:
        if any(c in v for c in '/\\. "$') or len(v) > 63:
            raise ConfigError(f"MONGO_DB is not a valid database name: {v!r}")
        kw["mongo_db"] = v
    for name, key in (("USER_ID", "user_id"), ("DEVICE_ID", "device_id")):
        if (v := get(name)) is not None:
            if not ID_RE.match(v):
                raise ConfigError(f"{name} must be 1-128 letters, digits or . _ ~ : -, got {v!r}")
            kw[key] = v
    if (v := get("SYNC_INTERVAL_SECONDS")) is not None:
        try:
            seconds = float(v)
        except ValueError:
            raise ConfigError(f"SYNC_INTERVAL_SECONDS must be a number, got {v!r}") from None
        if not 0.1 <= seconds <= 86400:
            raise ConfigError(f"SYNC_INTERVAL_SECONDS must be between 0.1 and 86400, got {v}")
        kw["sync_interval_seconds"] = seconds
    if (v := get("SYNC_BATCH_SIZE")) is not None:
        kw["sync_batch_size"] = _int("SYNC_BATCH_SIZE", v, 1, 10_000)
    if (v := get("HOST")) is not None:
        kw["host"] = v
    if (v := get("PORT")) is not None:
        kw["port"] = _int("PORT", v, 0, 65535)
    if (v := get("CORS_ORIGINS")) is not None:
        origins = _list(v)
        if "*" in origins:
            raise ConfigError("CORS_ORIGINS must list origins; '*' is not allowed")
        for origin in origins:
            if not origin.startswith(("http://", "https://")):
                raise ConfigError(f"CORS_ORIGINS entries must be http(s) origins, got {origin!r}")
        kw["cors_origins"] = origins
    if (v := get("ALLOWED_HOSTS")) is not None:
        kw["allowed_hosts"] = tuple(h.lower() for h in _list(v))
    if (v := get("API_TOKEN")) is not None:
        if len(v) < 16:
            raise ConfigError("API_TOKEN must be at least 16 characters")
        kw["api_token"] = v
    if (v := get("LOG_LEVEL")) is not None:
        if v.upper() not in LOG_LEVELS:
            raise ConfigError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {v!r}")
        kw["log_level"] = v.upper()
    if (v := get("HUB_TIMEOUT_MS")) is not None:
        kw["hub_timeout_ms"] = _int("HUB_TIMEOUT_MS", v, 100, 60_000)
    if (v := get("SYNC_PROCESS")) is not None:
        if v.lower() not in ("1", "0", "true", "false", "yes", "no"):
            raise ConfigError(f"SYNC_PROCESS must be 1 or 0, got {v!r}")
        kw["sync_process"] = v.lower() in ("1", "true", "yes")
    if kw.get("db_connector") == "mongo" and not kw.get("mongo_uri"):
        raise ConfigError("DB_CONNECTOR=mongo needs MONGO_URI")
    return Settings(**kw)

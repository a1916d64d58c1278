"""Every setting, read once from the environment and an optional `.env` file. Pure apart from
reading those two; a bad value raises ConfigError naming the setting."""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlsplit, urlunsplit

from server.core.records import ID_RE

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
    sqlite_synchronous: str = "FULL"
    mongo_uri: str | None = None
    mongo_db: str = "coursesync"
    user_id: str | None = None
    origin: str | None = None
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
    sync_push_on_write: bool = True  # a round soon after each write the API answers
    sync_live: bool = True  # keep a request waiting at the hub for other devices' changes
    max_clock_skew_seconds: float = 86400.0  # see changes.MAX_SKEW_MS
    conflicts_keep_resolved_days: float = 90
    hub_url: str | None = None  # a hub server (`python -m server --hub`), instead of MONGO_URI
    hub_token: str | None = None
    hub_metrics_token: str | None = None
    hub_public_url: str | None = None  # where devices reach this hub, for its invitations (`hub invite`)
    # A hub server's quotas per device (see hub_routes): going over answers 429.
    hub_max_origins: int = 16
    hub_max_quarantined: int = 1000
    hub_max_quarantined_bytes: int = 2 * 1024 * 1024
    hub_max_refusals_per_minute: int = 600
    hub_max_wait_seconds: float = 60.0  # a wait is held at most this long, whatever it asks
    hub_device_retention_days: float = 180.0  # a device unseen this long holds no history back
    hub_compact_every_minutes: float = 60.0  # how often a hub server compacts history; 0: never
    # What a hub server's front holds for a connection (hub_front.py, hub_conn.py).
    hub_header_seconds: float = 10.0
    hub_idle_seconds: float = 30.0
    hub_body_min_bytes_per_second: int = 8192
    hub_body_grace_seconds: float = 10.0
    hub_max_connections: int = 12_000  # 10,000 waiting devices, and room for the calls that wake them
    # One line per name that looks like a setting and is none (a typo in .env or the environment),
    # for the server to print at start-up: the setting is not silently ignored.
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def hub_address(self) -> str:
        """Where this device syncs, for a person: the hub's URL, or MONGO_URI without its password."""
        return self.hub_url or redact_uri(self.mongo_uri)

    @property
    def hub_enabled(self) -> bool:
        return bool(self.mongo_uri or self.hub_url)


# --- parsers: (setting name, raw text) -> value, or ConfigError naming the setting ---------
Parser = Callable[[str, str], Any]


def _text(name: str, raw: str) -> str:
    return raw


def _choice(*choices: str) -> Parser:
    def parse(name: str, raw: str) -> str:
        if raw not in choices:
            raise ConfigError(f"{name} must be {' or '.join(repr(c) for c in choices)}, got {raw!r}")
        return raw
    return parse


def _bounded(cast: Callable[[str], Any], noun: str, low: float, high: float) -> Parser:
    def parse(name: str, raw: str) -> Any:
        try:
            value = cast(raw)
        except ValueError:
            raise ConfigError(f"{name} must be {noun}, got {raw!r}") from None
        if not low <= value <= high:
            raise ConfigError(f"{name} must be between {low:g} and {high:g}, got {raw}")
        return value
    return parse


def _integer(low: int, high: int) -> Parser:
    return _bounded(int, "an integer", low, high)


def _number(low: float, high: float) -> Parser:
    return _bounded(float, "a number", low, high)


def _mongo_uri(name: str, raw: str) -> str:
    if not raw.startswith(("mongodb://", "mongodb+srv://")):
        raise ConfigError(f"{name} must start with mongodb:// or mongodb+srv://, got {redact_uri(raw)!r}")
    return raw


LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def _hub_url(name: str, raw: str) -> str:
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 - a port that is not a number raises here
    except ValueError:
        raise ConfigError(f"{name} is not a URL: {raw!r}") from None
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("https", "http") or not host or parts.username or parts.query or parts.fragment:
        raise ConfigError(f"{name} must be https://host[:port][/path] with no password, got {raw!r}")
    if parts.scheme == "http" and not (host in LOOPBACK_HOSTS or host.startswith("127.")):
        raise ConfigError(f"{name} must be https:// unless the hub is on this machine (loopback), got {raw!r}")
    return without_protocol_path(raw)


# What a person may paste after a hub's address: the protocol's own path (the hub's start-up line
# prints it) or the API's. Either names the same hub, whose address is what comes before.
PROTOCOL_PATHS = ("/hub/v1", "/api/v1")


def without_protocol_path(url: str) -> str:
    """A hub's address as given, less a trailing slash and a trailing /hub/v1 or /api/v1."""
    url = url.rstrip("/")
    for path in PROTOCOL_PATHS:
        if url.endswith(path):
            return url[: -len(path)].rstrip("/")
    return url


def _database(name: str, raw: str) -> str:
    if any(c in raw for c in '/\\. "$') or len(raw) > 63:
        raise ConfigError(f"{name} is not a valid database name: {raw!r}")
    return raw


def _record_id(name: str, raw: str) -> str:
    if not ID_RE.match(raw):
        raise ConfigError(f"{name} must be 1-128 letters, digits or . _ ~ : -, got {raw!r}")
    return raw


def _list(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _origins(name: str, raw: str) -> tuple[str, ...]:
    origins = _list(raw)
    if "*" in origins:
        raise ConfigError(f"{name} must list origins; '*' is not allowed")
    for origin in origins:
        if not origin.startswith(("http://", "https://")):
            raise ConfigError(f"{name} entries must be http(s) origins, got {origin!r}")
    return origins


def _hosts(name: str, raw: str) -> tuple[str, ...]:
    return tuple(h.lower() for h in _list(raw))


def _token(name: str, raw: str) -> str:
    if len(raw) < 16:
        raise ConfigError(f"{name} must be at least 16 characters")
    return raw


def _log_level(name: str, raw: str) -> str:
    if raw.upper() not in LOG_LEVELS:
        raise ConfigError(f"{name} must be one of {', '.join(LOG_LEVELS)}, got {raw!r}")
    return raw.upper()


def _flag(name: str, raw: str) -> bool:
    if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
        raise ConfigError(f"{name} must be 1 or 0, got {raw!r}")
    return raw.lower() in ("1", "true", "yes")


@dataclass(frozen=True)
class Setting:
    name: str  # the environment variable
    attr: str  # the Settings field it sets
    parse: Parser
    default: str  # as docs/settings.md says it
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting("DB_CONNECTOR", "db_connector", _choice("sql", "mongo"), "`sql`",
            "store the API runs on: `sql` (SQLite) or `mongo` (the hub itself)"),
    Setting("SQLITE_PATH", "sqlite_path", _text, "`var/courses.sqlite3`", "the local store"),
    Setting("SQLITE_SYNCHRONOUS", "sqlite_synchronous", _choice("FULL", "NORMAL"), "`FULL`",
            "`FULL`: a write that answered survives a power cut; `NORMAL`: faster, but the last "
            "writes before a power cut can be lost (see [durability](learner.md#durability))"),
    Setting("MONGO_URI", "mongo_uri", _mongo_uri, "unset",
            "MongoDB as the hub, reached directly (one trusted owner; see [running a hub](hub-operator.md)), "
            "or the store of a hub server or of `DB_CONNECTOR=mongo`"),
    Setting("MONGO_DB", "mongo_db", _database, "`coursesync`", "database on the hub"),
    Setting("HUB_URL", "hub_url", _hub_url, "unset",
            "a hub server to sync through, instead of `MONGO_URI` (`https://` unless on loopback)"),
    Setting("HUB_TOKEN", "hub_token", _token, "unset", "this device's token for `HUB_URL` (`hub add-device`)"),
    Setting("USER_ID", "user_id", _record_id, "the user the store was seeded with, else `me`",
            "whose data this server serves"),
    Setting("DEVICE_ID", "origin", _record_id, "made once, kept in SQLite",
            "the origin this store signs its changes with (the name is older than the word)"),
    Setting("SYNC_INTERVAL_SECONDS", "sync_interval_seconds", _number(0.1, 86400), "`30`",
            "time between background rounds"),
    Setting("SYNC_BATCH_SIZE", "sync_batch_size", _integer(1, 10_000), "`500`", "changes per push or pull batch"),
    Setting("HUB_TIMEOUT_MS", "hub_timeout_ms", _integer(100, 60_000), "`3000`",
            "how long to wait for the hub before calling it down"),
    Setting("SYNC_PROCESS", "sync_process", _flag, "`1`",
            "run sync rounds in a child process of the server (`0`: in the server's own)"),
    Setting("SYNC_PUSH_ON_WRITE", "sync_push_on_write", _flag, "`1`",
            "push a write as soon as the API answered it (`0`: on the timer only)"),
    Setting("SYNC_LIVE", "sync_live", _flag, "`1`",
            "keep one request waiting at the hub, so that other devices' changes arrive at once (`0`: on the "
            "timer only)"),
    Setting("MAX_CLOCK_SKEW_SECONDS", "max_clock_skew_seconds", _number(60, 7 * 86400), "`86400`",
            "a change stamped further ahead of this device's clock is quarantined, not applied"),
    Setting("CONFLICTS_KEEP_RESOLVED_DAYS", "conflicts_keep_resolved_days", _number(1, 36_500), "`90`",
            "a value that lost a merge, once restored or dismissed, is forgotten after this long (an open one "
            "stays until a person acts on it)"),
    Setting("HOST", "host", _text, "`127.0.0.1`", "the address to listen on"),
    Setting("PORT", "port", _integer(0, 65535), "`8000`", "the port to listen on"),
    Setting("CORS_ORIGINS", "cors_origins", _origins, "the Vite dev and preview origins",
            "comma-separated origins allowed to call the API"),
    Setting("ALLOWED_HOSTS", "allowed_hosts", _hosts, "`localhost,127.0.0.1,[::1],::1`", "accepted `Host` headers"),
    Setting("API_TOKEN", "api_token", _token, "unset",
            "when set, every route but health and the sync page's empty shell needs "
            "`Authorization: Bearer <token>`"),
    Setting("LOG_LEVEL", "log_level", _log_level, "`INFO`", "`DEBUG`, `INFO`, `WARNING`, `ERROR`"),
    Setting("HUB_METRICS_TOKEN", "hub_metrics_token", _token, "unset",
            "a hub server: the bearer token a Prometheus scrape of its `/metrics` brings; unset, it serves none"),
    Setting("HUB_PUBLIC_URL", "hub_public_url", _hub_url, "http://`HOST`:`PORT` when that is loopback",
            "a hub server: the address devices reach it at, written into its invitations (`hub invite`); "
            "`https://` unless on loopback"),
    Setting("HUB_MAX_ORIGINS", "hub_max_origins", _integer(1, 100_000), "`16`",
            "a hub server: origins one device may own (its first, its heal origin, and one per restored or moved "
            "store) and bring in by relay"),
    Setting("HUB_MAX_QUARANTINED", "hub_max_quarantined", _integer(1, 10_000_000), "`1000`",
            "a hub server: refused changes it keeps per user (each at most 1 KB of the change and 300 bytes of "
            "its reason)"),
    Setting("HUB_MAX_QUARANTINED_BYTES", "hub_max_quarantined_bytes", _integer(4096, 2**40), "`2097152`",
            "a hub server: bytes those refused changes take as stored, per user, at most"),
    Setting("HUB_MAX_REFUSALS_PER_MINUTE", "hub_max_refusals_per_minute", _integer(1, 1_000_000), "`600`",
            "a hub server: changes of one device it refuses in a minute before it answers 429"),
    Setting("HUB_MAX_WAIT_SECONDS", "hub_max_wait_seconds", _number(1, 60), "`60`",
            "a hub server holds a device's waiting call at most this long (below a proxy's idle timeout)"),
    Setting("HUB_DEVICE_RETENTION_DAYS", "hub_device_retention_days", _number(1, 3650), "`180`",
            "a hub server: a device not seen pulling for this long no longer holds its user's history back "
            "(`hub history`)"),
    Setting("HUB_COMPACT_EVERY_MINUTES", "hub_compact_every_minutes", _number(0, 10_080), "`60`",
            "a hub server drops the history every device it still serves has pulled this often (`0`: only by "
            "`hub compact`)"),
    Setting("HUB_HEADER_SECONDS", "hub_header_seconds", _number(0.5, 300), "`10`",
            "a hub server closes a connection whose request head has not come whole this long after it opened "
            "(or after its first byte; each connection's time is drawn between half and all of it); a request "
            "without a device's token must come whole, body too"),
    Setting("HUB_IDLE_SECONDS", "hub_idle_seconds", _number(0.5, 3600), "`30`",
            "a hub server closes a kept-alive connection that sends no new request for this long"),
    Setting("HUB_BODY_MIN_BYTES_PER_SECOND", "hub_body_min_bytes_per_second", _integer(1, 1_000_000_000), "`8192`",
            "a hub server answers 408 to a body that comes slower than this on average, once "
            "`HUB_BODY_GRACE_SECONDS` have passed"),
    Setting("HUB_BODY_GRACE_SECONDS", "hub_body_grace_seconds", _number(0, 600), "`10`",
            "how long a body may take at a hub server before its rate counts"),
    Setting("HUB_MAX_CONNECTIONS", "hub_max_connections", _integer(8, 1_000_000), "`12000`",
            "connections a hub server holds (at most its open-file limit less 96); past it, the one idle "
            "longest is closed for a new one"),
)


def settings_table() -> str:
    """docs/settings.md's table of settings, made from SETTINGS (a test keeps the page equal to it)."""
    rows = [f"| `{s.name}` | {s.default} | {s.help} |" for s in SETTINGS]
    return "\n".join(["| setting | default | meaning |", "|---|---|---|", *rows])


def load_settings(env: dict[str, str] | None = None, dotenv_path: str | None = ".env") -> Settings:
    """Settings from `env` (default: os.environ over the values of `.env`)."""
    file_keys: list[str] = []
    if env is None:
        env = {}
        if dotenv_path and os.path.exists(dotenv_path):
            from dotenv import dotenv_values

            from_file = dotenv_values(dotenv_path)
            file_keys = list(from_file)
            env.update({k: v for k, v in from_file.items() if v is not None})
        env.update(os.environ)
    values: dict[str, Any] = {"warnings": unknown_settings(file_keys, env, dotenv_path or ".env")}
    for setting in SETTINGS:
        raw = (env.get(setting.name) or "").strip()
        if raw:
            values[setting.attr] = setting.parse(setting.name, raw)
    if values.get("db_connector") == "mongo" and not values.get("mongo_uri"):
        raise ConfigError("DB_CONNECTOR=mongo needs MONGO_URI")
    if values.get("hub_url") and values.get("mongo_uri"):
        raise ConfigError("set HUB_URL or MONGO_URI, not both: a device syncs through one hub")
    if bool(values.get("hub_url")) != bool(values.get("hub_token")):
        raise ConfigError("HUB_URL and HUB_TOKEN go together: set both or neither")
    return Settings(**values)


def unknown_settings(file_keys: list[str], env: dict[str, str], dotenv_path: str) -> tuple[str, ...]:
    """A warning for every name in the .env file that is not a setting, and for every name in the
    environment that is one letter or so away from a setting (other programs' variables are none
    of ours), each with the nearest setting when there is one."""
    names = [s.name for s in SETTINGS]
    found = []
    for key in file_keys:
        if key not in names:
            found.append(_unknown(key, f"in {dotenv_path}", names, 0.6))
    for key in env:
        if key not in names and key not in file_keys and _near(key, names, 0.85):
            found.append(_unknown(key, "in the environment", names, 0.85))
    return tuple(found)


def _near(key: str, names: list[str], cutoff: float) -> str | None:
    close = difflib.get_close_matches(key.upper(), names, n=1, cutoff=cutoff)
    return close[0] if close else None


def _unknown(key: str, where: str, names: list[str], cutoff: float) -> str:
    near = _near(key, names, cutoff)
    hint = f"did you mean {near}?" if near else "docs/settings.md lists the settings"
    return f"{key} ({where}): not a setting, ignored; {hint}"


"""Safe by default: loopback, the Host allowlist, CORS only for listed origins, an optional
bearer token, and errors that reveal nothing about the server's insides or its hub password."""

from __future__ import annotations

import json

import pytest

from server.api import create_app
from server.core.config import Settings
from tests.conftest import COURSE
from tests.procs import ServerProcess

TOKEN = "s3cret-token-of-32-characters-xx"


def app_with(device, tmp_path, **settings):
    return create_app(Settings(sqlite_path=str(tmp_path / "x"), **settings), store=device, start_sync=False)


@pytest.fixture
def device(sql_factory):
    conn = sql_factory(user_id="learner")
    conn.connect()
    return conn


@pytest.mark.parametrize("host,status", [("localhost:8000", 200), ("127.0.0.1", 200), ("[::1]:8000", 200),
                                         ("evil.example", 400), ("localhost.evil.example", 400),
                                         ("127.0.0.1.nip.io", 400)])
def test_only_allowed_host_headers_are_served(device, tmp_path, host, status):
    client = app_with(device, tmp_path).test_client()
    resp = client.get("/api/v1/courses", headers={"Host": host})
    assert resp.status_code == status
    if status == 400:
        assert resp.get_json()["error"]["code"] == "invalid_host"


def test_allowed_hosts_can_name_a_lan_address(device, tmp_path):
    client = app_with(device, tmp_path, allowed_hosts=("laptop.lan",)).test_client()
    assert client.get("/api/v1/health", headers={"Host": "laptop.lan:8000"}).status_code == 200
    assert client.get("/api/v1/health", headers={"Host": "localhost"}).status_code == 400


def test_cors_answers_listed_origins_only_and_never_star(device, tmp_path):
    client = app_with(device, tmp_path).test_client()
    pre = client.options("/api/v1/courses", headers={"Origin": "http://localhost:5173",
                                                      "Access-Control-Request-Method": "PATCH"})
    assert pre.status_code == 204 and pre.headers["Access-Control-Allow-Origin"] == "http://localhost:5173"
    assert "If-Match" in pre.headers["Access-Control-Allow-Headers"]
    for origin in ("https://evil.example", "null", "http://localhost:5174"):
        resp = client.get("/api/v1/courses", headers={"Origin": origin})
        assert "Access-Control-Allow-Origin" not in resp.headers
    resp = client.get("/api/v1/courses", headers={"Origin": "http://localhost:4173"})
    assert resp.headers["Access-Control-Allow-Origin"] == "http://localhost:4173"
    assert "ETag" in resp.headers["Access-Control-Expose-Headers"]


def test_with_a_token_every_route_but_health_needs_it(device, tmp_path):
    client = app_with(device, tmp_path, api_token=TOKEN).test_client()
    assert client.get("/api/v1/health").status_code == 200
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN},
                    {"Authorization": f"Basic {TOKEN}"}, {"Authorization": f"Bearer {TOKEN}x"}):
        resp = client.get("/api/v1/courses", headers=headers)
        assert resp.status_code == 401 and resp.get_json()["error"]["code"] == "unauthorized"
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    refused = client.post("/api/v1/courses", json=COURSE)
    assert refused.status_code == 401 and device.get_courses() == []
    good = {"Authorization": f"Bearer {TOKEN}"}
    assert client.post("/api/v1/courses", json=COURSE, headers=good).status_code == 201
    for scheme in ("bearer", "BEARER", "Bearer  "):  # the scheme in any case (RFC 9110), spaces after it
        assert client.get("/api/v1/courses", headers={"Authorization": f"{scheme} {TOKEN}"}).status_code == 200
    assert client.get("/api/v1/openapi.json", headers=good).status_code == 200
    preflight = client.options("/api/v1/courses", headers={"Origin": "http://localhost:5173",
                                                           "Access-Control-Request-Method": "GET"})
    assert preflight.status_code == 204  # browsers send preflights without credentials


def test_the_token_is_compared_in_constant_time_on_every_request(device, tmp_path, monkeypatch):
    import hmac

    from server.web import http

    compared, constant_time = [], hmac.compare_digest

    def spy(given, expected):
        compared.append((given, expected))
        return constant_time(given, expected)

    monkeypatch.setattr(http.hmac, "compare_digest", spy)
    client = app_with(device, tmp_path, api_token=TOKEN).test_client()
    assert client.get("/api/v1/courses", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/api/v1/courses", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert compared == [(b"nope", TOKEN.encode()), (TOKEN.encode(),) * 2]


def test_store_errors_reveal_no_paths_sql_or_driver_details(device, tmp_path):
    client = app_with(device, tmp_path).test_client()
    device.pool.get().execute("DROP TABLE records")  # break the store underneath the server
    resp = client.get("/api/v1/courses")
    text = resp.get_data(as_text=True)
    assert resp.status_code == 503 and resp.get_json()["error"]["code"] == "store_unavailable"
    for leak in ("Traceback", "SELECT", "records", str(tmp_path), ".py", "sqlite3."):
        assert leak not in text


def test_the_hub_password_appears_in_no_answer_and_no_log_line(tmp_path):
    password = "hunter2-very-secret"
    srv = ServerProcess(tmp_path, MONGO_URI=f"mongodb://sync:{password}@127.0.0.1:1/?authSource=admin",
                        HUB_TIMEOUT_MS="300", SYNC_INTERVAL_SECONDS="0.5", LOG_LEVEL="DEBUG")
    srv.env.update(MONGO_URI=f"mongodb://sync:{password}@127.0.0.1:1/?authSource=admin")
    srv.start()
    try:
        answers = [srv.request("POST", "/api/v1/sync", {}), srv.request("GET", "/api/v1/sync/status"),
                   srv.request("GET", "/api/v1/health")]
        assert answers[0][0] == 503
        status = answers[1][1]["data"]
        assert status["hub"] == "mongodb://sync:***@127.0.0.1:1/?authSource=admin" and status["lastError"]
    finally:
        srv.stop()
    for _, body, headers in answers:
        assert password not in json.dumps(body) and password not in str(headers)
    log = srv.log_path.read_text()
    assert "sync round failed" in log and password not in log

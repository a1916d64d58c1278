"""`python -m server` as a user starts it: waitress on loopback, over real HTTP."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.procs import ROOT, ServerProcess
from tests.test_seed import pwa_seed_path


@pytest.fixture
def server(tmp_path):
    srv = ServerProcess(tmp_path)
    seeded = subprocess.run([sys.executable, "seed.py", str(pwa_seed_path())], cwd=ROOT,
                            env=srv.env, capture_output=True, text=True)
    assert seeded.returncode == 0, seeded.stderr
    srv.start()
    yield srv
    srv.stop()


def test_the_pwa_flows_over_http_on_the_pwa_sample_data(server):
    status, body, headers = server.request("GET", "/api/v1/courses")
    assert status == 200 and len(body["data"]) == 3 and headers["X-Request-ID"] == body["meta"]["traceId"]
    status, body, _ = server.request("POST", "/api/v1/courses", {"title": "New", "source": "https://a.b"})
    assert status == 201
    cid = body["data"]["id"]
    status, body, _ = server.request("POST", f"/api/v1/courses/{cid}/lectures", {"title": "L", "order": 1})
    assert status == 400 and body["error"]["fields"]["videoUrl"] == "is required"
    status, body, _ = server.request("PATCH", "/api/v1/users/me/focus-course", {"courseId": cid})
    assert status == 200 and body["data"]["focusCourseId"] == cid
    assert server.request("DELETE", f"/api/v1/courses/{cid}")[0] == 200
    assert server.request("GET", "/api/v1/users/me")[1]["data"]["focusCourseId"] is None
    status, body, _ = server.request("GET", "/nowhere")
    assert status == 404 and body["error"]["code"] == "not_found"


def test_cors_answers_only_the_allowed_origins(server):
    _, _, headers = server.request("OPTIONS", "/api/v1/courses", headers={
        "Origin": "http://localhost:5173", "Access-Control-Request-Method": "POST"})
    assert headers.get("Access-Control-Allow-Origin") == "http://localhost:5173"
    _, _, headers = server.request("GET", "/api/v1/courses", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in headers


def test_a_foreign_host_header_is_refused(server):
    status, body, _ = server.request("GET", "/api/v1/courses", headers={"Host": "evil.example"})
    assert status == 400 and body["error"]["code"] == "invalid_host"


def test_each_request_logs_one_line_with_its_trace_id(server):
    _, body, _ = server.request("GET", "/api/v1/courses")
    server.stop()
    log = server.log_path.read_text()
    assert "GET /api/v1/courses 200" in log and body["meta"]["traceId"] in log

"""The sync page, in a real browser (Debian's chromium driven by Playwright) against real
`python -m server` processes syncing through a hub server: a conflict made by two devices shows
and is restored with a click, "Sync now" moves a pending change, a hub that goes away shows as
backing off with its reason and recovers, and API_TOKEN is asked for once per tab.
Without chromium the browser tests are skipped with a message, except under CI=true."""

from __future__ import annotations

import os
import re
import shutil

import pytest

from tests.e2e.test_e2e_devices import courses, create, wait_for
from tests.hub.test_hub_process import Hubs

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
TOKEN = "a-token-for-this-test-only"


def _unavailable() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install -r requirements-dev.txt)"
    if not os.path.exists(CHROMIUM):
        return f"no chromium at {CHROMIUM} (apt-get install chromium, or set CHROMIUM)"
    return None


@pytest.fixture(scope="module")
def browser():
    reason = _unavailable()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests cannot run under CI: {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    yield tab
    context.close()


@pytest.fixture
def net(tmp_path):
    hubs = Hubs(tmp_path, "sql", None)
    yield hubs
    hubs.stop()


def open_page(page, srv):
    page.goto(f"http://127.0.0.1:{srv.port}/")
    return page


def expect_text(page, selector: str, pattern: str):
    from playwright.sync_api import expect

    expect(page.locator(selector)).to_contain_text(re.compile(pattern), timeout=15_000)


def test_a_conflict_shows_both_values_and_restore_brings_the_lost_one_back_everywhere(net, page):
    hub = net.hub()
    # no push on write on A, so that the restored value waits for "Sync now"
    a = net.device("A", hub, net.token(), SYNC_PUSH_ON_WRITE="0")
    b = net.device("B", hub, net.token())
    create(a, "/api/v1/courses", {"id": "c1", "title": "First", "source": "https://a.b"})
    net.sync("A")
    net.sync("B")
    assert a.request("PATCH", "/api/v1/courses/c1", {"title": "A's title"})[0] == 200
    assert b.request("PATCH", "/api/v1/courses/c1", {"title": "B's title"})[0] == 200  # later: it wins
    net.sync("B")
    net.sync("A")
    open_page(page, a)
    icon = page.evaluate("""() => new Promise(done => { const img = new Image();
        img.onload = () => done(img.naturalWidth); img.onerror = () => done(-1); img.src = '/favicon.ico'; })""")
    assert icon > 0, "the browser draws the favicon"
    assert page.locator("link[rel=icon]").get_attribute("href") == "/favicon.svg"
    expect_text(page, "#conflicts-heading", r"\(1 open\)")
    expect_text(page, "#conflicts-kept", "resolved ones are forgotten 90 days after")
    expect_text(page, "#state-headline", "Synced, but 1 value lost a merge")
    article = page.locator("article.conflict")
    expect_text(page, "article.conflict strong", "Course “B's title”")
    expect_text(page, "article.conflict", "its title — a later edit won")
    expect_text(page, "article.conflict .ids", "course c1, field title")
    expect_text(page, "article.conflict .kept", "B's title")
    expect_text(page, "article.conflict .lost-value", "A's title")
    article.get_by_role("button", name="Restore this value").click()
    expect_text(page, "#notice", "Restored")
    expect_text(page, "article.conflict .resolved", "Restored")
    expect_text(page, "#conflicts-heading", r"\(0 open\)")
    page.get_by_role("button", name="Sync now").click()
    expect_text(page, "#notice", r"Synced: sent 1")
    net.sync("B")
    assert courses(a)[0]["title"] == courses(b)[0]["title"] == "A's title"
    # B listed the same loss; the round that brought A's restore settled it there too.
    open_page(page, b)
    expect_text(page, "#conflicts-heading", r"\(0 open\)")
    expect_text(page, "article.conflict .resolved", "Settled: the value was written again since")
    assert page.get_by_role("button", name="Restore this value").count() == 0


def test_sync_now_moves_a_pending_change_and_works_from_the_keyboard(net, page):
    hub = net.hub()
    a = net.device("A", hub, net.token(), SYNC_PUSH_ON_WRITE="0")  # the change waits for the click
    b = net.device("B", hub, net.token())
    net.sync("A")
    create(a, "/api/v1/courses", {"id": "new", "title": "Made on A", "source": "https://a.b"})
    open_page(page, a)
    expect_text(page, "#state-headline", "1 change waiting to be sent")
    expect_text(page, "#pending", "1 change")
    page.focus("#sync-now")
    page.keyboard.press("Enter")
    expect_text(page, "#notice", r"Synced: sent 1")
    expect_text(page, "#state-headline", "Everything is synced")
    expect_text(page, "#pending", "0 changes")
    net.sync("B")
    assert [c["id"] for c in courses(b)] == ["new"]


def test_a_hub_that_goes_away_shows_as_backing_off_with_why_and_recovers(net, page):
    hub = net.hub()
    a = net.device("A", hub, net.token(), HUB_TIMEOUT_MS="500")
    net.sync("A")
    open_page(page, a)
    expect_text(page, "#state-headline", "Everything is synced")
    hub.kill()
    create(a, "/api/v1/courses", {"id": "offline", "title": "Written offline", "source": "https://a.b"})
    page.get_by_role("button", name="Sync now").click()
    expect_text(page, "#notice", "did not finish; what went wrong is said above")
    expect_text(page, "#state-headline", "Can't reach the hub right now")
    expect_text(page, "#state-detail", r"safe on this device.*Trying again at .*What went wrong: The hub at .* cannot")
    said = page.locator("body").inner_text()
    assert said.count("cannot be reached") == 1, "the error is said once"
    assert not re.search(r"\w+(Error|Exception)\b", said), "in words, without Python's exception names"
    hub.start()
    page.get_by_role("button", name="Sync now").click()
    expect_text(page, "#state-headline", "Everything is synced")
    expect_text(page, "#pending", "0 changes")


def test_the_page_asks_for_the_api_token_once_per_tab(net, page):
    hub = net.hub()
    a = net.device("A", hub, net.token(), API_TOKEN=TOKEN)
    open_page(page, a)
    expect_text(page, "#token-form", "access token")
    assert page.locator("#panel").inner_text().strip() == ""
    page.fill("#token", "not the token at all")
    page.get_by_role("button", name="Open").click()
    expect_text(page, "#token-form", "access token")
    assert page.locator("#token-form").is_visible()
    page.fill("#token", TOKEN)
    page.get_by_role("button", name="Open").click()
    expect_text(page, "#state-headline", "synced|Not synced|waiting")
    assert not page.locator("#token-form").is_visible()
    page.reload()  # the same tab: no second question
    expect_text(page, "#state-headline", "synced|Not synced|waiting")
    assert not page.locator("#token-form").is_visible()


# --- without a browser: what the page's answers carry ---------------------------------------
def test_the_page_is_escaped_guarded_and_self_contained(client, connector):
    from server.core.merge import _conflict

    state = {"kind": "course", "id": "c1", "courseId": None}
    entry = {**_conflict(state, "title", "<script>alert(1)</script>", "1", "<b>x</b>", "2", "remote", "newer_write"),
             "id": "k1", "detectedAt": "2030-01-01T00:00:00.000Z"}
    with connector.backend.writer():  # a conflict entry as a merge stores one
        connector.backend.persist([], [], [entry], own=False, bookmarks=None)
    resp = client.get("/sync")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200 and resp.mimetype == "text/html"
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "script-src 'nonce-" in resp.headers["Content-Security-Policy"]
    assert "http://" not in html.replace("http://127.0.0.1", "") and "https://" not in html  # nothing from elsewhere
    assert client.get("/", headers={"Host": "evil.example"}).status_code == 400
    assert client.get("/sync/panel").status_code == 200
    for path in ("/favicon.ico", "/favicon.svg"):
        icon = client.get(path)
        assert icon.status_code == 200 and icon.mimetype == "image/svg+xml" and b"<svg" in icon.data


def _status(**kw):
    base = {"state": "idle", "pending": {"count": 0}, "lastError": None, "lastSuccess": "2030-01-01T00:00:00.000Z",
            "nextRun": "2030-01-01T00:00:30.000Z", "lastRound": None}
    return {**base, **kw}


NOW = 1893456010.0  # 2030-01-01T00:00:10Z


@pytest.mark.parametrize("status, headline, words", [
    (_status(), "Everything is synced", "agree"),
    (_status(pending={"count": 2}), "2 changes waiting to be sent", "Sync now"),
    (_status(pending={"count": 1}), "1 change waiting to be sent", "next round"),
    (_status(state="running", pending={"count": 3}), "Syncing now", "3 of your changes"),
    (_status(state="live", live={"lastRemoteLagMs": 240.0}), "Everything is synced, live", "took 0.2 s"),
    (_status(state="live", live={"lastRemoteLagMs": None}), "Everything is synced, live", "as they are made."),
    (_status(state="live", pending={"count": 1}), "1 change waiting to be sent", "next round"),
    (_status(state="disabled"), "Sync is off", "nothing is sent anywhere"),
    (_status(openConflicts=1), "Synced, but 1 value lost a merge", "restore a lost value or dismiss it"),
    (_status(state="live", openConflicts=2, quarantined=1), "Synced, but 2 values lost a merge and 1 change was "
     "refused", "Everything else agrees"),
    (_status(quarantined=3), "Synced, but 3 changes were refused", "why each change was refused"),
    (_status(pending={"count": 1}, openConflicts=1), "1 change waiting to be sent", "next round"),
    (_status(lastSuccess=None), "Not synced yet", "first round"),
    (_status(state="backing_off", lastError="The hub at x cannot be reached (ConnectionRefusedError).",
             lastRound={"errorCode": "store_unavailable"}),
     "Can't reach the hub", "in 20 s). What went wrong: The hub at x cannot be reached."),
    (_status(state="backing_off", lastError="revoked", lastRound={"errorCode": "hub_refused"}),
     "no longer accepts this device", "new one (HUB_TOKEN)"),
    (_status(lastError="boom", lastRound={"errorCode": "internal_error"}), "ran into a problem", "log says more. boom"),
    (_status(lastError="odd", lastRound={"errorCode": "something_new"}), "did not finish", "odd"),
])
def test_the_state_in_words_a_learner_understands(status, headline, words):
    from server.device.page import state_words

    said = state_words(status, NOW)
    assert headline in said["headline"] and words in said["detail"], said


def test_sync_off_says_in_steps_what_to_do():
    from server.device.page import state_words

    said = state_words(_status(state="disabled"), NOW)
    assert said["tone"] == "off" and len(said["steps"]) == 3
    steps = said["steps"]
    assert "hub invite" in steps[0] and "Connect to a hub" in steps[1] and "no restart" in steps[2]


def test_the_chart_draws_a_failed_round_full_height_in_red_and_names_the_time_locally():
    from server.device.page import chart, local_time

    rounds = [{"at": "2030-01-01T00:00:00.000Z", "pushed": 1, "pulled": 0, "durationMs": 3.0, "error": None},
              {"at": "2030-01-01T00:00:30.000Z", "pushed": 0, "pulled": 0, "durationMs": 500.0,
               "error": "The hub at x cannot be reached (TimeoutError)."}]
    ok, failed = chart(rounds)["bars"]
    assert failed["error"] and failed["sent"] == 58 and failed["sent_y"] == 2 and not ok["error"]
    assert failed["label"].startswith(local_time("2030-01-01T00:00:30.000Z"))
    assert "TimeoutError" not in failed["label"] and "cannot be reached" in failed["label"]


def test_how_long_ago_in_words():
    from server.device.page import ago

    assert ago(None, NOW) == "never"
    assert ago("2030-01-01T00:00:08.000Z", NOW) == "just now"
    assert ago("2030-01-01T00:00:00.000Z", NOW) == "10 s ago"
    assert ago("2029-12-31T23:55:10.000Z", NOW) == "5 min ago"
    assert ago("2029-12-31T21:00:10.000Z", NOW) == "3 h ago"
    assert ago("2029-12-31T00:00:10.000Z", NOW) == "24 h ago"
    assert ago("2029-12-29T00:00:10.000Z", NOW) == "3 days ago"


def test_the_chart_stacks_what_each_round_sent_and_received():
    from server.device.page import chart

    rounds = [{"at": "2030-01-01T00:00:00.000Z", "pushed": 10, "pulled": 30, "durationMs": 5.0, "error": None},
              {"at": "2030-01-01T00:00:30.000Z", "pushed": 0, "pulled": 0, "durationMs": 1.0, "error": "hub down"}]
    bars = chart(rounds)["bars"]
    assert bars[0]["sent"] == 2 + 14 and bars[0]["got"] == 42 and bars[0]["got_y"] == 60 - 2 - 14 - 42
    assert bars[1]["error"] and bars[1]["got"] == 0 and "failed: hub down" in bars[1]["label"]
    assert "sent 10, received 30, 5.0 ms" in bars[0]["label"]
    assert chart([])["bars"] == []


def test_an_invitation_pasted_into_the_page_pairs_a_fresh_device_and_it_goes_live(net, page):
    from tests.e2e.test_pairing_process import SAMPLES, invite, make_run_device, titles

    hub = net.hub()
    fresh = make_run_device(net, "fresh")  # `make run` on a fresh clone: demo-learner's samples
    open_page(page, fresh)
    expect_text(page, "#state-headline", "Sync is off")
    page.get_by_label("Invitation").fill("coursesync://not-an-invitation")
    page.get_by_role("button", name="Connect", exact=True).click()
    expect_text(page, "#notice", "That is not an invitation")
    page.get_by_label("Invitation").fill(invite(net, hub, "laptop"))
    page.get_by_role("button", name="Connect", exact=True).click()
    expect_text(page, "#notice", f"Connected to http://127.0.0.1:{hub.port} as learner")
    from playwright.sync_api import expect

    expect(page.locator("#state-headline")).to_contain_text("live", timeout=120_000)
    expect_text(page, "#hub", "from an invitation")
    other = make_run_device(net, "other")
    status, _, _ = other.request("POST", "/api/v1/sync/hub", {"invitation": invite(net, hub, "phone")})
    assert status == 200
    create(fresh, "/api/v1/courses", {"id": "from-page", "title": "Made after pasting", "source": "https://a.b"})
    wait_for(lambda: "Made after pasting" in titles(other), 120, "the course on the other device")
    assert SAMPLES <= titles(other) and SAMPLES <= titles(fresh)

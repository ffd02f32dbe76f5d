"""The reviewer's desk over HTTP: pages, decisions, escaping, CSRF, login, offline docs."""

from __future__ import annotations

import html
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from activities.artifacts import ArtifactStore
from api.keys import hash_key
from api.main import create_app
from settings import Settings
from tests.run_standins import EDA_V1, FakeRunService, completed_run, parse_sse, waiting_run
from workflows.models import RunStatus

BASE = "http://desk.test"
SAME_ORIGIN = {"Origin": BASE}
KEYS = {
    "approver-key": ("ann", ["approver"]),
    "viewer-key": ("vic", ["viewer"]),
    "operator-key": ("otto", ["operator"]),
}


def desk_app(tmp_path: Path, **settings: object) -> tuple[httpx.AsyncClient, FakeRunService]:
    app = create_app(Settings(data_dir=tmp_path, temporal_address="127.0.0.1:1", **settings))
    runs = FakeRunService()
    app.state.runs = runs
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)
    return client, runs


@pytest.fixture
async def desk(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, FakeRunService]]:
    client, runs = desk_app(tmp_path)
    async with client:
        yield client, runs


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifacts")


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


# --- Pages -------------------------------------------------------------------------------------


async def test_inbox_lists_the_runs_awaiting_approval(desk):
    client, runs = desk
    runs.add(waiting_run("wf-waits", goal="Predict churn"))
    runs.add(completed_run("wf-done"))
    response = await client.get("/ui/inbox")
    assert response.status_code == 200
    inbox = response.text.split('data-testid="inbox"')[1].split("</table>")[0]
    assert 'href="/ui/runs/wf-waits"' in inbox and "Predict churn" in inbox
    assert "wf-done" not in inbox
    assert "wf-done" in response.text.split('data-testid="recent"')[1]


async def test_run_page_shows_plan_profile_highlighted_code_and_the_diff_from_v1(desk, store):
    client, runs = desk
    runs.add(waiting_run("wf-desk-1"))
    store.write_text("wf-desk-1", "data_engineering_agent", 1, "code.py", EDA_V1)
    page = (await client.get("/ui/runs/wf-desk-1")).text
    words = text_of(page)
    assert "Target Churn" in words and "Excluded customerID" in words
    assert "customerID is an identifier." in words
    assert "100 rows" in words and "Class balance: No 70, Yes 30" in words
    # Pygments classes on the code (keyword "import", name "pd"), rendered server-side.
    assert '<span class="kn">import</span>' in page
    diff = page.split('data-testid="diff"')[1].split("</table>")[0]
    added = re.findall(r'<tr class="add">.*?</tr>', diff, re.S)
    assert len(added) == 1 and "customerID" in text_of(added[0])
    assert "Changes from v1 to v2" in words and "+1 \N{MINUS SIGN}0" in words
    # Which feedback v2 answered, and what became of each request.
    versions = page.split('data-testid="versions"')[1].split("</table>")[0]
    assert "drop the customerID column" in text_of(versions)
    assert "✗ use a GPU — not available" in text_of(versions)
    assert 'href="/workflow/wf-desk-1/artifacts/data_engineering_agent/v1/code.py"' in versions


async def test_side_by_side_diff_pairs_old_and_new_lines(desk, store):
    client, runs = desk
    runs.add(waiting_run("wf-desk-1"))
    store.write_text("wf-desk-1", "data_engineering_agent", 1, "code.py", EDA_V1)
    page = (await client.get("/ui/runs/wf-desk-1", params={"diff": "side"})).text
    diff = page.split('data-testid="diff"')[1].split("</table>")[0]
    assert 'class="code diff side"' in page
    inserted = re.findall(r'<tr class="insert">.*?</tr>', diff, re.S)
    assert len(inserted) == 1 and "customerID" in text_of(inserted[0])


async def test_missing_previous_version_is_said_not_hidden(desk):
    client, runs = desk
    runs.add(waiting_run("wf-desk-1"))
    page = (await client.get("/ui/runs/wf-desk-1")).text
    assert "EDA code v1 is not in the artifact store." in page


async def test_report_shows_metrics_against_baseline_review_figures_and_framed_html(desk, store):
    client, runs = desk
    runs.add(completed_run("wf-done"))
    store.write_bytes("wf-done", "browser_agent", 1, "figures/churn.png", b"\x89PNG\r\n\x1a\n")
    marker = "<script>parent.document.title='pwned'</script>"
    store.write_text("wf-done", "critic_agent", 1, "report.html", f"<h1>Report</h1>{marker}")
    page = (await client.get("/ui/runs/wf-done")).text
    metrics = text_of(page.split('data-testid="metrics"')[1].split("</table>")[0])
    assert "f1" in metrics and "0.8100" in metrics and "0.4200" in metrics and "+0.3900" in metrics
    assert "Beats the baseline clearly." in page
    assert '<img src="/workflow/wf-done/artifacts/browser_agent/v1/figures/churn.png"' in page
    # The report generated code wrote is framed from the artifact route, sandboxed, never inlined.
    frame = re.search(r"<iframe[^>]*>", page)
    assert frame is not None
    assert " sandbox " in frame.group(0)
    assert 'src="/workflow/wf-done/artifacts/critic_agent/v1/report.html"' in frame.group(0)
    assert "pwned" not in page


async def test_everything_a_run_carries_is_escaped(desk, store):
    client, runs = desk
    attack = '"><script>alert(1)</script>'
    run = waiting_run("wf-desk-1", goal=f"Predict churn {attack}")
    run.code_context.eda_code.code += f"# </pre>{attack}\nx = '{attack}'\n"  # type: ignore[union-attr]
    run.review_feedback[0].text = attack
    run.messages[0].content = attack
    run.plan.rationale = attack  # type: ignore[union-attr]
    run.last_error = attack
    runs.add(run)
    store.write_text("wf-desk-1", "browser_agent", 1, "x.txt", "x")
    page = (await client.get("/ui/runs/wf-desk-1")).text
    assert "<script>alert" not in page
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 6
    inbox = (await client.get("/ui/inbox")).text
    assert "<script>alert" not in inbox and "&lt;script&gt;alert(1)" in inbox


async def test_pages_forbid_framing_and_foreign_scripts(desk):
    client, runs = desk
    runs.add(waiting_run("wf-desk-1"))
    response = await client.get("/ui/runs/wf-desk-1")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert response.headers["cache-control"] == "no-store"
    assert "http" not in re.sub(r'href="http[^"]*"', "", response.text.split("<body>")[0])


async def test_unknown_run_is_a_404_page(desk):
    client, _ = desk
    response = await client.get("/ui/runs/wf-nope")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "No run with id &#39;wf-nope&#39;." in response.text


# --- Decisions ---------------------------------------------------------------------------------


async def test_approve_posts_the_version_shown_and_returns_to_the_run(desk):
    client, runs = desk
    runs.add(waiting_run("wf-desk-1"))
    page = (await client.get("/ui/runs/wf-desk-1")).text
    version = re.search(r'action="/ui/runs/wf-desk-1/approve".*?name="version" value="(\d+)"',
                        page, re.S)  # fmt: skip
    assert version is not None and version.group(1) == "2"
    response = await client.post(
        "/ui/runs/wf-desk-1/approve", data={"version": version.group(1)}, headers=SAME_ORIGIN
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/runs/wf-desk-1?notice=approved"
    assert runs.decisions == [
        {"decision": "approve", "version": 2, "feedback": None, "by": "anonymous"}
    ]


async def test_reject_sends_the_feedback_with_the_version(desk):
    client, runs = desk
    runs.add(waiting_run("wf-desk-1"))
    response = await client.post(
        "/ui/runs/wf-desk-1/reject",
        data={"version": "2", "feedback": "  add a correlation heatmap "},
        headers=SAME_ORIGIN,
    )
    assert response.status_code == 303
    assert runs.decisions[0]["feedback"] == "add a correlation heatmap"
    page = (await client.get(response.headers["location"])).text
    assert "The Data Engineering agent is writing a new version" in page


async def test_a_stale_version_is_refused_with_a_clear_message_on_the_page(desk):
    client, runs = desk
    runs.add(waiting_run("wf-desk-1"))
    response = await client.post(
        "/ui/runs/wf-desk-1/reject",
        data={"version": "1", "feedback": "keep this text"},
        headers=SAME_ORIGIN,
    )
    assert response.status_code == 409
    error = response.text.split('data-testid="decision-error"')[1].split("</p>")[0]
    assert "waiting on EDA code v2, not v1" in error
    assert "keep this text</textarea>" in response.text  # what they typed is not lost
    assert runs.decisions == []


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Referer": "http://evil.example/ui/runs/wf-desk-1"},
        {"Origin": "null", "Referer": "http://desk.test.evil.example/x"},
        {},
    ],
    ids=["foreign-origin", "foreign-referer", "null-origin", "no-origin-or-referer"],
)
async def test_a_decision_posted_from_another_site_is_refused(desk, headers):
    client, runs = desk
    runs.add(waiting_run("wf-desk-1"))
    response = await client.post(
        "/ui/runs/wf-desk-1/approve", data={"version": "2"}, headers=headers
    )
    assert response.status_code == 403
    assert "send it again" in text_of(response.text)
    assert runs.decisions == []


async def test_a_decision_from_the_desk_page_itself_passes_with_only_a_referer(desk):
    client, runs = desk
    runs.add(waiting_run("wf-desk-1"))
    response = await client.post(
        "/ui/runs/wf-desk-1/approve",
        data={"version": "2"},
        headers={"Referer": f"{BASE}/ui/runs/wf-desk-1"},
    )
    assert response.status_code == 303 and len(runs.decisions) == 1


# --- Login (AUTH_MODE=api_key) -----------------------------------------------------------------


@pytest.fixture
async def keyed_desk(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, FakeRunService]]:
    keys = tmp_path / "keys.json"
    keys.write_text(
        json.dumps(
            [
                {"name": name, "roles": roles, "key_sha256": hash_key(key)}
                for key, (name, roles) in KEYS.items()
            ]
        )
    )
    client, runs = desk_app(tmp_path, auth_mode="api_key", api_keys_file=keys)
    runs.add(waiting_run("wf-desk-1"))
    async with client:
        yield client, runs


async def log_in(client: httpx.AsyncClient, key: str, next_page: str = "") -> httpx.Response:
    return await client.post(
        "/ui/login", data={"api_key": key, "next": next_page}, headers=SAME_ORIGIN
    )


async def test_a_page_without_credentials_redirects_to_the_login_page(keyed_desk):
    client, _ = keyed_desk
    response = await client.get("/ui/runs/wf-desk-1", params={"diff": "side"})
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/login?next=%2Fui%2Fruns%2Fwf-desk-1%3Fdiff%3Dside"
    # The REST API keeps answering 401 with JSON.
    api = await client.get("/workflows")
    assert api.status_code == 401 and "detail" in api.json()


async def test_login_sets_an_httponly_strict_cookie_that_opens_the_desk(keyed_desk):
    client, _ = keyed_desk
    response = await log_in(client, "approver-key", "/ui/runs/wf-desk-1")
    assert response.status_code == 303 and response.headers["location"] == "/ui/runs/wf-desk-1"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("orchestrator_session=approver-key;")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" not in cookie
    page = await client.get("/ui/runs/wf-desk-1")
    assert page.status_code == 200 and "ann" in page.text and 'data-testid="approve"' in page.text


async def test_login_over_https_sets_a_secure_cookie(tmp_path: Path, keyed_desk):
    client, _ = keyed_desk
    response = await client.post(
        "https://desk.test/ui/login",
        data={"api_key": "viewer-key"},
        headers={"Origin": "https://desk.test"},
    )
    assert response.status_code == 303 and "Secure" in response.headers["set-cookie"]


async def test_an_unknown_key_is_refused_and_sets_no_cookie(keyed_desk):
    client, _ = keyed_desk
    response = await log_in(client, "guessed-key")
    assert response.status_code == 401
    assert "not known" in response.text and "set-cookie" not in response.headers


async def test_login_never_redirects_off_the_desk(keyed_desk):
    client, _ = keyed_desk
    for target in ("//evil.example/ui/x", "https://evil.example/", "/ui/\\evil"):
        response = await log_in(client, "viewer-key", target)
        assert response.headers["location"] == "/ui/inbox", target


async def test_a_revoked_cookie_goes_back_to_login_and_is_cleared(keyed_desk):
    client, _ = keyed_desk
    client.cookies.set("orchestrator_session", "revoked-key")
    response = await client.get("/ui/inbox")
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/login?next=%2Fui%2Finbox&expired=1"
    assert 'orchestrator_session=""' in response.headers["set-cookie"]


async def test_a_viewer_may_read_but_not_decide(keyed_desk):
    client, runs = keyed_desk
    await log_in(client, "viewer-key")
    page = await client.get("/ui/runs/wf-desk-1")
    assert page.status_code == 200 and 'data-testid="approve"' not in page.text
    # The attack: post the form anyway.
    response = await client.post(
        "/ui/runs/wf-desk-1/approve", data={"version": "2"}, headers=SAME_ORIGIN
    )
    assert response.status_code == 403 and "lacks the &#39;approver&#39; role" in response.text
    assert runs.decisions == []


async def test_the_login_form_itself_is_checked_for_origin(keyed_desk):
    client, _ = keyed_desk
    response = await client.post(
        "/ui/login", data={"api_key": "viewer-key"}, headers={"Origin": "http://evil.example"}
    )
    assert response.status_code == 403 and "set-cookie" not in response.headers


async def test_logout_clears_the_cookie(keyed_desk):
    client, _ = keyed_desk
    await log_in(client, "viewer-key")
    response = await client.post("/ui/logout", headers=SAME_ORIGIN)
    assert response.status_code == 303
    assert (await client.get("/ui/inbox")).status_code == 303


# --- Offline assets ----------------------------------------------------------------------------


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_api_docs_load_their_assets_from_this_server(desk, page):
    client, _ = desk
    html = (await client.get(page)).text
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    scripts = [source for source in sources if source.endswith(".js")]
    assert scripts, html
    for source in sources:
        assert source.startswith("/"), f"{page} loads {source} from elsewhere"
        asset = await client.get(source)
        assert asset.status_code == 200 and len(asset.content) > 1000, source


async def test_desk_assets_are_served_from_the_package(desk):
    client, _ = desk
    for path, kind in (
        ("/ui/static/desk.css", "text/css"),
        ("/ui/static/desk.js", "javascript"),
        ("/ui/highlight.css", "text/css"),
    ):
        response = await client.get(path)
        assert response.status_code == 200 and kind in response.headers["content-type"], path


async def test_without_javascript_a_working_run_refreshes_itself_and_a_waiting_one_does_not(desk):
    client, runs = desk
    runs.add(waiting_run("wf-waits"))
    working = waiting_run("wf-works")
    working.status = RunStatus.RUNNING
    runs.add(working)
    refresh = '<noscript><meta http-equiv="refresh"'
    assert refresh in (await client.get("/ui/runs/wf-works")).text
    # Someone may be typing feedback on a waiting run: never reload under them.
    assert refresh not in (await client.get("/ui/runs/wf-waits")).text


async def test_the_event_stream_accepts_the_desk_cookie_and_refuses_no_credentials(keyed_desk):
    client, runs = keyed_desk
    runs.add(completed_run("wf-done"))
    assert (await client.get("/workflow/wf-done/events")).status_code == 401
    await log_in(client, "viewer-key")
    response = await client.get("/workflow/wf-done/events")  # a finished run: the stream ends
    assert response.status_code == 200
    events = [e for e in parse_sse(iter(response.text.splitlines())) if e.event != "message"]
    assert [event.event for event in events] == ["status", "end"]


async def test_someone_who_reads_only_their_own_runs_cannot_open_or_follow_another(keyed_desk):
    client, runs = keyed_desk  # wf-desk-1 belongs to someone else
    await log_in(client, "operator-key")
    page = await client.get("/ui/runs/wf-desk-1")
    assert page.status_code == 404 and "text/html" in page.headers["content-type"]
    events = await client.get("/workflow/wf-desk-1/events")
    assert events.status_code == 404
    assert "Predict churn" not in page.text  # nothing of the run shows, not even that it exists
    runs.add(completed_run("wf-mine"), owner="otto")
    assert (await client.get("/ui/runs/wf-mine")).status_code == 200


async def test_each_version_shows_the_feedback_it_answered_and_its_own_request_outcomes(
    desk, store
):
    from workflows.models import Feedback, RequestOutcome, Step

    client, runs = desk
    state = waiting_run("wf-desk-versions")
    eda = state.code_context.eda_code
    assert eda is not None
    eda.version = 3
    at = state.created_at
    state.review_feedback = [
        Feedback(
            source="human", text="drop the id", step=Step.DATA_ENGINEERING, at=at, on_version=1
        ),
        # A target chosen by the reviewer answers v2 with a new plan, not a Data Engineering note.
        Feedback(
            source="human", text="Predict 'Contract'", step=Step.RESEARCH, at=at, on_version=2
        ),
    ]
    runs.add(state)
    for version in (1, 2):
        store.write_text("wf-desk-versions", "data_engineering_agent", version, "code.py", EDA_V1)
    outcome = [RequestOutcome(request="drop the id", done=True).model_dump()]
    store.write_text(
        "wf-desk-versions", "data_engineering_agent", 2, "addressed.json", json.dumps(outcome)
    )
    page = (await client.get("/ui/runs/wf-desk-versions")).text
    rows = re.findall(
        r"<tr.*?</tr>", page.split('data-testid="versions"')[1].split("</table>")[0], re.S
    )
    by_version = {row: html.unescape(text_of(row)) for row in rows}
    v2 = next(text for text in by_version.values() if "v2" in text)
    v3 = next(text for text in by_version.values() if "v3" in text)
    assert "drop the id" in v2 and "✓ drop the id" in v2
    assert "Predict 'Contract'" in v3

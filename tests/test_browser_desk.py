"""The reviewer's desk in a real browser (Debian's Chromium through Playwright) over the real
service: dev server, worker and API, with API keys.

A reviewer signs in, finds the run in the inbox, rejects v1 with feedback, sees v2's diff and
what it addressed, approves, watches the run finish without reloading, and opens the report.
Screenshots land in test-output/screenshots/.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from temporalio.testing import WorkflowEnvironment

from api.keys import hash_key
from tests.conftest import ROOT, ServiceProcesses

pytestmark = pytest.mark.integration

SCREENSHOTS = ROOT / "test-output" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
REVIEWER_KEY = "orc_desk-reviewer-key-for-the-browser-test"
FEEDBACK = "add a correlation heatmap"


@pytest.fixture(scope="module")
def keyed_service(
    dev_server_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcesses]:
    data_dir = tmp_path_factory.mktemp("desk-service")
    keys = data_dir / "keys.json"
    keys.write_text(
        json.dumps(
            [{"name": "rita", "roles": ["operator", "approver"],
              "key_sha256": hash_key(REVIEWER_KEY)}]
        )
    )  # fmt: skip
    processes = ServiceProcesses(
        dev_server_env.client.service_client.config.target_host,
        data_dir,
        AUTH_MODE="api_key",
        API_KEYS_FILE=str(keys),
        APPROVAL_TIMEOUT_SECONDS="600",
        EVENTS_POLL_SECONDS="0.5",
    )
    processes.start_worker()
    processes.start_api()
    try:
        yield processes
    finally:
        processes.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


def shoot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def start_run(service: ServiceProcesses) -> str:
    response = httpx.post(
        f"{service.base_url}/workflow/start",
        json={"user_goal": "Predict which customers churn", "dataset_url": "examples/churn.csv"},
        headers={"X-API-Key": REVIEWER_KEY},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["workflow_id"])


def wait_for_inbox(
    page: Page, service: ServiceProcesses, workflow_id: str, timeout: float = 120
) -> None:
    """Reload the inbox until the run waits there (the inbox is a plain page, no live list)."""
    deadline = time.monotonic() + timeout
    link = page.locator(f'[data-testid=inbox] a:text-is("{workflow_id}")')
    while time.monotonic() < deadline:
        if link.count():
            return
        response = httpx.get(
            f"{service.base_url}/workflow/{workflow_id}/status",
            headers={"X-API-Key": REVIEWER_KEY},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        assert response.json()["status"] in ("started", "running", "awaiting_approval"), (
            response.json()
        )
        page.wait_for_timeout(500)
        page.reload()
    raise AssertionError(f"{workflow_id} never reached the inbox")


def wait_until(page: Page, condition: str, timeout: float = 120) -> None:
    """Poll a JavaScript condition from outside the page (its CSP forbids eval, which
    Playwright's wait_for_function would need)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(condition):
        assert time.monotonic() < deadline, f"never true: {condition}"
        page.wait_for_timeout(200)


def test_reviewer_rejects_sees_the_diff_approves_and_watches_the_run_finish(
    keyed_service: ServiceProcesses, browser: Browser
):
    workflow_id = start_run(keyed_service)
    context = browser.new_context(base_url=keyed_service.base_url, viewport={"width": 1280,
                                                                              "height": 900})  # fmt: skip
    page = context.new_page()
    page.set_default_timeout(30_000)

    # Signing in: the desk sends an anonymous browser to the login page, then where it wanted.
    page.goto("/ui/inbox")
    expect(page).to_have_url(f"{keyed_service.base_url}/ui/login?next=%2Fui%2Finbox")
    page.fill("#api_key", REVIEWER_KEY)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{keyed_service.base_url}/ui/inbox")
    expect(page.get_by_test_id("who")).to_contain_text("rita")
    cookie = next(c for c in context.cookies() if c["name"] == "orchestrator_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    wait_for_inbox(page, keyed_service, workflow_id)
    shoot(page, "01-inbox")
    page.click(f'[data-testid=inbox] a:text-is("{workflow_id}")')
    expect(page.get_by_test_id("code-version")).to_have_text("v1")
    expect(page.get_by_test_id("status")).to_have_text("awaiting approval")
    expect(page.get_by_test_id("plan")).to_contain_text("Churn")
    expect(page.get_by_test_id("code").locator("span.kn").first).to_be_visible()  # highlighted
    shoot(page, "02-run-v1")

    # Reject with feedback; the page follows the regeneration live and offers the new version.
    page.fill("[data-testid=feedback]", FEEDBACK)
    page.click("[data-testid=reject]")
    expect(page.get_by_test_id("notice")).to_contain_text("Rejected")
    fresh, version = page.get_by_test_id("fresh-version"), page.get_by_test_id("code-version")
    # The offline agent may finish v2 before the page loads; then the page shows it directly.
    wait_until(
        page,
        "!document.getElementById('fresh-version').hidden"
        " || document.querySelector('[data-testid=code-version]').textContent === 'v2'",
    )
    if fresh.is_visible():
        fresh.locator("a").click()
    expect(version).to_have_text("v2")
    diff = page.get_by_test_id("diff")
    expect(diff).to_be_visible()
    expect(diff.locator("tr.add").first).to_be_visible()
    expect(page.get_by_test_id("addressed-feedback")).to_have_text(FEEDBACK)
    expect(page.get_by_test_id("outcomes")).to_contain_text(FEEDBACK)
    shoot(page, "03-diff-v1-v2")
    page.click("[data-testid=side-by-side]")
    expect(
        page.locator("table.diff.side tr.insert, table.diff.side tr.replace").first
    ).to_be_visible()
    shoot(page, "04-diff-side-by-side")

    # Approve, then watch: the status, the step and the messages change without a reload.
    page.click("[data-testid=approve]")
    expect(page.get_by_test_id("notice")).to_contain_text("Approved")
    page.evaluate("window.__sameDocument = true")
    messages_before = page.locator("[data-testid=messages] li").count()
    steps_seen: set[str] = set()
    deadline = time.monotonic() + 240
    while not page.get_by_test_id("run-ended").is_visible():
        assert time.monotonic() < deadline, f"the run did not end; steps seen {steps_seen}"
        steps_seen.add(page.get_by_test_id("current-step").inner_text())
        page.wait_for_timeout(200)
    assert page.evaluate("window.__sameDocument === true"), "the page reloaded"
    assert len(steps_seen - {"human approval"}) >= 2, steps_seen  # progress was shown live
    assert page.locator("[data-testid=messages] li").count() > messages_before
    expect(page.get_by_test_id("status")).to_have_text("completed")
    steps = page.locator("[data-testid=steps] li")
    expect(page.locator("[data-testid=steps] li.done")).to_have_count(steps.count())
    shoot(page, "05-completed-live")

    # The report: metrics against the baseline, the critic's review, figures, the HTML report.
    page.click("[data-testid=run-ended] a")
    report = page.get_by_test_id("report")
    expect(report).to_be_visible()
    expect(page.get_by_test_id("metrics")).to_contain_text("Baseline")
    expect(page.get_by_test_id("verdict")).to_have_text("accept")
    images = page.locator(".figures img")
    assert images.count() >= 1
    # Figures load lazily; ask for each now and check it decodes as an image (the artifact route
    # accepts the session cookie for <img> requests too).
    loaded = page.evaluate(
        """Promise.all(Array.from(document.querySelectorAll('.figures img')).map(img => {
             img.loading = 'eager';
             return img.decode().then(() => img.naturalWidth > 0, () => false);
           }))"""
    )
    assert all(loaded), f"figures that did not load: {loaded}"
    # The run's HTML report, written by the worker from generated output, is framed sandboxed
    # (no scripts, no access to the desk's origin) from the artifact route, and shows.
    frame = page.get_by_test_id("report-frame")
    assert frame.get_attribute("sandbox") == ""
    assert (frame.get_attribute("src") or "").endswith("/report.html")
    frame.scroll_into_view_if_needed()
    expect(page.frame_locator("[data-testid=report-frame]").locator("h1")).to_be_visible()
    shoot(page, "06-report")
    context.close()

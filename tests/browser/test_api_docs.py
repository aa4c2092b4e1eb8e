"""The API documentation page (/api/docs/, Swagger UI) renders in a real browser under the
site's own Content-Security-Policy, which allows no inline script."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client
from playwright.sync_api import Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Every Content-Security-Policy violation the page reports, kept for the test to read.
LISTEN_FOR_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  const where = `${event.sourceFile}:${event.lineNumber}`;
  window.__cspViolations.push(
    `${event.violatedDirective} blocked ${event.blockedURI || "inline"} (${where})`
  );
});
"""


def log_in(page: Page, live_server, user) -> None:
    """A session for the user, as the login page would have made (the page is not under test)."""
    client = Client()
    client.force_login(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    page.context.add_cookies([{"name": cookie.key, "value": cookie.value, "url": live_server.url}])


def test_the_api_docs_render_the_operations_without_breaking_the_csp(
    page: Page, live_server, annotator, artifacts
):
    console_violations: list[str] = []
    problems: list[str] = []

    def on_console(message) -> None:
        if "Content Security Policy" in message.text:
            console_violations.append(message.text)
        elif message.type == "error":
            problems.append(f"console: {message.text}")

    page.on("console", on_console)
    page.on("requestfailed", lambda r: problems.append(f"failed: {r.url} {r.failure}"))
    page.on(
        "response", lambda r: problems.append(f"{r.status}: {r.url}") if r.status >= 400 else None
    )
    page.add_init_script(LISTEN_FOR_VIOLATIONS)
    # The sign-in page first (the live server's first request imports the URL conf).
    page.goto(f"{live_server.url}/accounts/login/", timeout=30_000)
    expect(page.get_by_label("Username")).to_be_visible()
    page.screenshot(path=str(artifacts / "login-page.png"), full_page=True)
    log_in(page, live_server, annotator)

    response = page.goto(f"{live_server.url}/api/docs/")

    assert response is not None
    assert response.status == 200
    assert response.headers.get("content-security-policy") == settings.CONTENT_SECURITY_POLICY
    # Swagger UI fetches /api/schema/ and draws an operation block per endpoint; under a
    # CSP that blocks its init script the page stays blank.
    projects = page.locator(".opblock").filter(has_text="/api/projects/").first
    try:
        projects.wait_for(state="visible", timeout=10_000)
        rendered = True
    except PlaywrightTimeoutError:
        rendered = False
    violations = page.evaluate("window.__cspViolations") + console_violations
    assert not violations, f"/api/docs/ broke the Content-Security-Policy: {violations}"
    assert rendered, "Swagger UI drew no operation for /api/projects/ within 10 s"
    assert page.locator(".opblock").count() > 20
    page.screenshot(path=str(artifacts / "api-docs.png"))
    assert not problems, problems

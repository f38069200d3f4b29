"""What a person sees in the portal, in a real browser against `atoll up`.

One platform serves the whole session, so every test makes its own uniquely named tokens
and asserts only about those.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable

import httpx
from playwright.sync_api import Dialog, Locator, Page, Response, expect

SCREENSHOT = "/tmp/atoll-e2e-tokens.png"
NAV_PAGES = {
    "Models": ("/models", "Models"),
    "Deployments": ("/deployments", "Deployments"),
    "Experiments": ("/experiments", "Experiments"),
    "A/B calculator": ("/ab-calculator", "A/B calculator"),
    "Monitoring": ("/monitoring", "Monitoring"),
    "Backends": ("/backends", "Backend catalog"),
    "Audit": ("/audit", "Audit log"),
    "Tokens": ("/tokens", "API tokens"),
    "Users": ("/users", "Users"),
}


def unique_name(purpose: str) -> str:
    return f"e2e-{purpose}-{uuid.uuid4().hex[:8]}"


def submit_token_form(page: Page, name: str) -> None:
    form = page.get_by_test_id("token-form")
    form.get_by_label("Name").fill(name)
    form.get_by_role("checkbox", name="read", exact=True).check()
    form.get_by_role("button", name="Create token").click()


def create_token(page: Page, name: str) -> str:
    """Create a read-only token on the tokens page; returns the secret it shows once."""
    if not page.url.endswith("/tokens"):
        page.goto("/tokens")
    submit_token_form(page, name)
    secret = page.get_by_test_id("token-secret")
    expect(secret).to_have_text(re.compile(r"^atl_\S+$"))
    return secret.inner_text()


def token_rows(page: Page, name: str) -> Locator:
    """The token table's rows for one token name."""
    return page.get_by_test_id("token-table").locator("tbody tr").filter(has_text=name)


def mark_document(page: Page) -> None:
    """Tag the live document; `assert_same_document` then proves no full page load happened."""
    page.evaluate("window.__e2eMark = true")


def assert_same_document(page: Page) -> None:
    assert page.evaluate("window.__e2eMark === true"), "the page reloaded instead of swapping"


def page_load(path: str) -> Callable[[Response], bool]:
    def matches(response: Response) -> bool:
        return response.request.resource_type == "document" and response.url.endswith(path)

    return matches


def whoami_status(base_url: str, secret: str) -> httpx.Response:
    return httpx.get(f"{base_url}/api/v1/whoami", headers={"Authorization": f"Bearer {secret}"})


def test_sign_in_sends_a_person_back_to_the_page_they_asked_for(page: Page, admin_password: str) -> None:
    page.goto("/tokens")
    expect(page).to_have_url(re.compile(r"/login\?next=/tokens$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in to Atoll")
    expect(page.get_by_test_id("whoami")).to_have_count(0)

    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill("not-the-password-at-all")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_be_visible()
    expect(page.get_by_role("alert")).to_have_text("wrong username or password")
    expect(page).to_have_url(re.compile(r"/login$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in to Atoll")
    expect(page.get_by_label("Username")).to_have_value("admin")
    expect(page.get_by_test_id("whoami")).to_have_count(0)

    page.get_by_label("Password").fill(admin_password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/tokens$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("API tokens")
    expect(page.get_by_test_id("whoami")).to_have_text("admin · admin")


def test_a_new_token_is_shown_once_listed_and_works(logged_in_page: Page, base_url: str) -> None:
    page = logged_in_page
    name = unique_name("create")
    page.goto("/tokens")
    mark_document(page)

    secret = create_token(page, name)
    assert_same_document(page)
    prefix = secret[:10]
    row = token_rows(page, name)
    expect(row).to_have_count(1)
    expect(row).to_contain_text(prefix)
    expect(row).to_contain_text("active")
    expect(row).not_to_contain_text(secret)
    expect(page.get_by_test_id("token-secret-box")).to_contain_text(name)
    page.screenshot(path=SCREENSHOT, full_page=True)

    page.reload()
    expect(page.get_by_role("heading", level=1)).to_have_text("API tokens")
    expect(page.get_by_test_id("token-secret")).to_have_count(0)
    html = page.content()
    assert secret not in html
    assert prefix in html

    answer = whoami_status(base_url, secret)
    assert answer.status_code == 200, answer.text
    assert answer.json()["username"] == "admin"
    assert answer.json()["scopes"] == ["read"]


def test_a_revoked_token_stops_working(logged_in_page: Page, base_url: str) -> None:
    page = logged_in_page
    name = unique_name("revoke")
    secret = create_token(page, name)
    assert whoami_status(base_url, secret).status_code == 200

    messages: list[str] = []

    def accept(dialog: Dialog) -> None:
        messages.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    row = token_rows(page, name)
    row.get_by_role("button", name="Revoke").click()
    expect(row.locator(".state")).to_have_text("revoked")
    expect(row.get_by_role("button", name="Revoke")).to_have_count(0)
    assert len(messages) == 1
    assert name in messages[0]

    answer = whoami_status(base_url, secret)
    assert answer.status_code == 401
    assert answer.headers["content-type"].startswith("application/problem+json")


def test_a_mutation_without_the_csrf_token_is_refused(logged_in_page: Page) -> None:
    page = logged_in_page
    page.goto("/tokens")
    name = unique_name("csrf")

    refused = page.request.post("/tokens", form={"name": name, "scopes": "read"})
    assert refused.status == 403
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert "CSRF" in refused.json()["detail"]

    page.reload()
    expect(token_rows(page, name)).to_have_count(0)

    # The same request with the page's token (what htmx sends from <body hx-headers>) is accepted.
    headers = json.loads(page.locator("body").get_attribute("hx-headers") or "{}")
    accepted = page.request.post("/tokens", form={"name": name, "scopes": "read"}, headers=headers)
    assert accepted.status == 200, accepted.text()


def test_signing_out_ends_the_session(logged_in_page: Page) -> None:
    page = logged_in_page
    page.goto("/")
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    expect(page.get_by_test_id("whoami")).to_have_count(0)

    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login\?next=/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in to Atoll")


def test_the_audit_log_records_and_filters_actions(logged_in_page: Page) -> None:
    page = logged_in_page
    create_token(page, unique_name("audit"))

    page.goto("/audit")
    expect(page.get_by_role("heading", level=1)).to_have_text("Audit log")
    rows = page.get_by_test_id("audit-table").locator("tbody tr")
    for action in ("token.create", "session.login"):
        newest = rows.filter(has=page.locator("code", has_text=action)).first
        expect(newest.locator("td").nth(1)).to_have_text("admin")

    mark_document(page)
    page.get_by_label("Action prefix").fill("token.")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"action=token\."))
    expect(rows.filter(has=page.locator("code", has_text="session.login"))).to_have_count(0)
    expect(rows.filter(has=page.locator("code", has_text="token.create")).first).to_be_visible()
    actions = rows.locator("td code").all_inner_texts()
    assert actions, "the filtered table is empty"
    assert all(action.startswith("token.") for action in actions), actions
    assert_same_document(page)


def test_every_nav_link_opens_a_page(logged_in_page: Page) -> None:
    page = logged_in_page
    page.goto("/")
    nav = page.locator("header nav")
    labels = nav.get_by_role("link").all_inner_texts()
    assert labels == list(NAV_PAGES), labels

    for label, (path, heading) in NAV_PAGES.items():
        with page.expect_response(page_load(path)) as answer:
            nav.get_by_role("link", name=label, exact=True).click()
        assert answer.value.status == 200, f"{label}: HTTP {answer.value.status}"
        expect(page).to_have_url(re.compile(f"{path}$"))
        expect(page.get_by_role("heading", level=1)).to_have_text(heading)
        expect(page.locator("main [role=alert]")).to_have_count(0)
        expect(nav.get_by_role("link", name=label, exact=True)).to_have_attribute("aria-current", "page")
        expect(page.locator("main")).not_to_contain_text("Not built yet")  # every area is built

    page.goto("/backends")
    names = page.locator("main table tbody tr td:first-child strong").all_inner_texts()
    assert {"gpu", "asic", "cpu"} <= set(names), names


def test_an_htmx_error_is_shown_to_the_person(logged_in_page: Page) -> None:
    page = logged_in_page
    name = unique_name("twice")
    create_token(page, name)

    submit_token_form(page, name)
    problem = page.locator("#flash [role=alert]")
    expect(problem).to_have_count(1)
    expect(problem).to_contain_text(f"you already have a token named '{name}'")
    expect(token_rows(page, name)).to_have_count(1)

"""
Double opt-in in a real browser, with real mail: a visitor signs up on a site
with double opt-in and a consent checkbox, the mailer (`deliver_mail --once`,
a child process) hands the confirmation mail to an SMTP server on loopback,
the test reads it as a mail client would, and the browser opens its links:
a page with one button, the confirmation, and the way out. The database is
checked at each step.

The SMTP server is aiosmtpd in a thread of this process (tests/support/smtp.py).
"""

import re

import pytest
import requests

from loopback.processes import free_port
from tests.browser.conftest import (
    DESKTOP,
    playwright_expect,
    wait_as_a_person,
    watched_contexts,
)
from tests.support import ci
from tests.support.commands import manage
from tests.support.stack import ServingStack

expect = playwright_expect()

CONSENT_TEXT = "I agree to get the monthly news by mail and can leave at any time."
PRIVACY_URL = "https://example.com/privacy"
SENDER = "Sign-ups <signup@example.com>"
NAME = "Grace Hopper, visit pills.example"
BOUNCE = "550 5.1.1 No such mailbox here"
OWNER, OWNER_PASSWORD = "owner", "a long mail owner passphrase"


class MailingStack(ServingStack):
    """The serving stack with its public address on nginx's port, so that the
    links in its mail are the ones a browser opens."""

    def __init__(self, database_params, **environment):
        self.public_port = free_port()
        super().__init__(
            database_params,
            DJANGO_PUBLIC_URL=f"http://localhost:{self.public_port}",
            **environment,
        )

    def make_nginx(self, name, **variables):
        if name == "nginx":
            variables.setdefault("NGINX_PORT", self.public_port)
        return super().make_nginx(name, **variables)


@pytest.fixture(scope="module")
def mail_site(browser, smtp):
    """A site with double opt-in, mail to the loopback server and the owner's
    consent wording with its checkbox."""
    from django.conf import settings

    from loopback.nginx import NGINX_BINARY

    ci.require_program(
        NGINX_BINARY, "the browser tests go through Debian's nginx", "nginx"
    )
    stack = MailingStack(
        settings.DATABASES["default"],
        EMAIL_URL=smtp.url,
        DEFAULT_FROM_EMAIL=SENDER,
        SIGNUP_DOUBLE_OPT_IN="true",
        SIGNUP_CONSENT_TEXT=CONSENT_TEXT,
        SIGNUP_PRIVACY_URL=PRIVACY_URL,
        SIGNUP_CONSENT_CHECKBOX="true",
    ).start()
    try:
        stack.base_url = f"http://{stack.browser_host}"
        assert stack.base_url == stack.env["DJANGO_PUBLIC_URL"]
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def page(browser, mail_site):
    with watched_contexts(browser, mail_site.base_url) as make:
        yield make().new_page()


def query(site, sql, params=()):
    with site.connect() as conn:
        return conn.execute(sql, params).fetchall()


def run_mailer(site, tmp_path):
    """`manage.py deliver_mail --once` with the site's settings: it sends what
    is due and exits."""
    result = manage(
        "deliver_mail",
        "--once",
        env={**site.env, "MAILER_HEARTBEAT_FILE": str(tmp_path / "heartbeat")},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result


def sign_up(page, address):
    """Fill the form in as a person would, the box ticked; the thanks page."""
    page.goto("/")
    page.get_by_label("Name").fill(NAME)
    page.get_by_label("Email address").fill(address)
    page.get_by_label(CONSENT_TEXT).check()
    wait_as_a_person(page)
    page.get_by_role("button", name="Go").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Please check your inbox")


def links(message):
    body = message.get_content()
    (confirm,) = re.findall(r"http://\S+/confirm/\S+/", body)
    (unsubscribe,) = re.findall(r"http://\S+/unsubscribe/\S+/", body)
    return confirm, unsubscribe


def test_a_visitor_confirms_through_the_mailed_link_and_leaves_again(
    mail_site, smtp, page, tmp_path
):
    address = "grace@example.com"

    # The form: the owner's sentence labels a box that is not ticked, and
    # the sign-up is refused until it is.
    page.goto("/")
    consent = page.get_by_label(CONSENT_TEXT)
    expect(consent).to_have_attribute("type", "checkbox")
    expect(consent).not_to_be_checked()
    privacy = page.get_by_role("link", name="How your data is handled")
    expect(privacy).to_have_attribute("href", PRIVACY_URL)
    page.get_by_label("Name").fill(NAME)
    page.get_by_label("Email address").fill(address)
    wait_as_a_person(page)
    page.get_by_role("button", name="Go").click()
    expect(page.locator(".field").filter(has=consent)).to_contain_text(
        "Please tick the box to sign up."
    )
    assert (
        query(mail_site, "SELECT 1 FROM accounts_signup WHERE email = %s", (address,))
        == []
    )

    # Ticked: stored, waiting, with the version of the wording it was given
    # under, and that wording on record.
    consent.check()
    wait_as_a_person(page)
    page.get_by_role("button", name="Go").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Please check your inbox")
    ((signup_id, status, confirmed_at, version),) = query(
        mail_site,
        "SELECT id, status, confirmed_at, consent_version FROM accounts_signup"
        " WHERE email = %s",
        (address,),
    )
    assert (status, confirmed_at) == ("pending", None)
    assert query(
        mail_site,
        "SELECT text, privacy_url, checkbox FROM accounts_consentwording"
        " WHERE version = %s",
        (version,),
    ) == [(CONSENT_TEXT, PRIVACY_URL, True)]

    # The mailer sends it; the mail as a mail client reads it.
    assert smtp.to(address) == []
    run_mailer(mail_site, tmp_path)
    (received,) = smtp.to(address)
    message = received.message
    assert message["From"] == SENDER
    assert message["To"] == address
    assert message["Subject"] == "Please confirm your sign-up at localhost"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    confirm, unsubscribe = links(message)
    assert message["List-Unsubscribe"].strip() == f"<{unsubscribe}>"
    assert "pills" not in message.as_string()
    assert "Grace" not in message.as_string()
    assert confirm.startswith(f"{mail_site.base_url}/confirm/")

    # Opening the link (as a mail scanner would too) confirms nothing.
    page.goto(confirm)
    expect(page.get_by_role("heading", level=1)).to_have_text("Confirm your sign-up")
    expect(page.get_by_role("button")).to_have_count(1)
    assert query(
        mail_site, "SELECT status FROM accounts_signup WHERE email = %s", (address,)
    ) == [("pending",)]

    # The button does.
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Your sign-up is confirmed"
    )
    ((status, confirmed_at),) = query(
        mail_site,
        "SELECT status, confirmed_at FROM accounts_signup WHERE email = %s",
        (address,),
    )
    assert status == "confirmed"
    assert confirmed_at is not None

    # The way out: the link opens a page with one button, which erases the
    # sign-up and its mail, on the same address (no redirect).
    page.goto(unsubscribe)
    expect(page.get_by_role("heading", level=1)).to_have_text("Leave the list")
    expect(page.get_by_role("button")).to_have_count(1)
    signup_rows = "SELECT 1 FROM accounts_signup WHERE id = %s"
    mail_rows = "SELECT 1 FROM accounts_outgoingmail WHERE signup_id = %s"
    assert query(mail_site, signup_rows, (signup_id,)) == [(1,)]
    assert query(mail_site, mail_rows, (signup_id,)) == [(1,)]
    page.get_by_role("button", name="Remove me").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("You have left the list")
    expect(page).to_have_url(unsubscribe)
    assert query(mail_site, signup_rows, (signup_id,)) == []
    assert query(mail_site, mail_rows, (signup_id,)) == []


def test_a_mail_clients_one_click_unsubscribe_through_nginx(
    mail_site, smtp, page, tmp_path
):
    address = "ada@example.com"
    sign_up(page, address)
    run_mailer(mail_site, tmp_path)
    (received,) = smtp.to(address)
    message = received.message
    unsubscribe = message["List-Unsubscribe"].strip()[1:-1]

    # What a mailbox provider sends for its own button (RFC 8058): the body
    # alone, no cookie, no CSRF token.
    response = requests.post(
        unsubscribe,
        data=message["List-Unsubscribe-Post"],
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        allow_redirects=False,
        timeout=30,
    )

    assert response.status_code == 200
    assert "You have left the list" in response.text
    assert (
        query(mail_site, "SELECT 1 FROM accounts_signup WHERE email = %s", (address,))
        == []
    )


def test_the_owner_sees_who_waits_and_queues_failed_mail_again(
    mail_site, smtp, browser, page, tmp_path
):
    address = "bounce@example.com"
    sign_up(page, address)
    with smtp.refusing(BOUNCE, at="RCPT", recipients=[address]):
        run_mailer(mail_site, tmp_path)
    mail_row = (
        "SELECT m.status, m.last_error FROM accounts_outgoingmail AS m"
        " JOIN accounts_signup AS s ON s.id = m.signup_id WHERE s.email = %s"
    )
    assert query(mail_site, mail_row, (address,)) == [("failed", BOUNCE)]
    ((waiting,),) = query(
        mail_site, "SELECT count(*) FROM accounts_signup WHERE status = 'pending'"
    )

    mail_site.admin_session(OWNER, OWNER_PASSWORD)  # creates the account
    with watched_contexts(browser, mail_site.base_url) as make:
        owner = make(viewport=DESKTOP).new_page()
        owner.goto("/admin/login/?next=/admin/accounts/signup/")
        owner.get_by_label("Username").fill(OWNER)
        owner.get_by_label("Password").fill(OWNER_PASSWORD)
        owner.get_by_role("button", name="Log in").click()

        # Above the sign-ups: how many wait, a link to them.
        notice = owner.locator(".mail-notices")
        expect(notice).to_have_text(
            f"Double opt-in is on: {waiting} sign-up"
            f"{' is' if waiting == 1 else 's are'} waiting for confirmation."
        )
        notice.get_by_role("link").click()
        expect(owner).to_have_url(re.compile(r"\?status__exact=pending$"))
        rows = owner.locator("#result_list tbody tr")
        expect(rows).to_have_count(waiting)
        row = rows.filter(has_text=address)
        expect(row.locator(".field-status")).to_have_text("waiting for confirmation")

        # The sign-up's page: its status and the wording it was given under.
        row.get_by_role("link", name=NAME).click()
        expect(owner.locator(".field-status .readonly")).to_have_text(
            "waiting for confirmation"
        )
        expect(owner.locator(".field-consent .readonly")).to_contain_text(CONSENT_TEXT)

        # The failed mail, with the server's answer; queued again.
        owner.goto("/admin/accounts/outgoingmail/")
        owner.locator("#changelist-filter").get_by_role("link", name="failed").click()
        failed = owner.locator("#result_list tbody tr").filter(has_text=address)
        expect(failed.locator(".field-last_error")).to_have_text(BOUNCE)
        failed.locator(".action-select").check()
        owner.get_by_label("Action:").select_option(
            label="Queue the selected failed mail again"
        )
        owner.get_by_role("button", name="Go").click()
        expect(owner.locator(".messagelist")).to_contain_text("1 mail queued again.")
    assert query(mail_site, mail_row, (address,)) == [("queued", BOUNCE)]

    # Once the cause is fixed, the mailer delivers it.
    run_mailer(mail_site, tmp_path)
    assert query(mail_site, mail_row, (address,)) == [("sent", "")]
    assert len(smtp.to(address)) == 1

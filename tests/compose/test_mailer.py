"""
The `mailer` service in a real Docker engine, with a real SMTP server in it:
the test server of tests/compose/standins/smtp, added by the test-only
override tests/compose/compose.mail.yaml on the mailer's way out. A sign-up
through nginx with double opt-in on makes the mailer deliver one
confirmation mail, read here as a mail client reads it; its confirm link is
followed through nginx and its one-click unsubscribe is POSTed as a mail
client does. Then the mailer is stopped with a mail in hand, and development
mode prints each mail in the mailer's log.

One project serves the module, on a fresh copy of the repository whose .env
turns double opt-in on, as an owner would: first as compose.yaml runs it,
then in development mode on the same database and images. The tests run in
order.
"""

import base64
import email
import email.policy
import json
import re
import time
import uuid

import pytest
import requests

from loopback.processes import free_port
from tests.compose import engine, images, traffic
from tests.compose.test_stack import (
    Stack,
    browser_session,
    inspect,
    sign_up,
    wait_until_healthy,
)
from tests.support.commands import site_environment

# A stack start-up and a switch to development mode, each in one test.
pytestmark = [pytest.mark.engine, pytest.mark.timeout(600)]

MAIL_OVERRIDE = "tests/compose/compose.mail.yaml"
SENDER = "signup@example.com"  # compose.mail.yaml's DEFAULT_FROM_EMAIL
# What a visitor types as their name; nothing of it may reach a mail.
TYPED_NAME = "Cheap pills at pills.example"
ONE_CLICK = "List-Unsubscribe=One-Click"
# Each message the test SMTP server kept, base64 in a JSON list.
READ_INBOX = (
    "import base64, json, pathlib\n"
    "new = pathlib.Path('/srv/mail/inbox/new')\n"
    "files = sorted(new.iterdir()) if new.is_dir() else []\n"
    "print(json.dumps([base64.b64encode(f.read_bytes()).decode() for f in files]))\n"
)


class MailStack(Stack):
    def __init__(self, project, port, clone, env):
        super().__init__(project, port)
        self.clone = clone
        self.env = env

    def status(self, address):
        return self.sql(f"SELECT status FROM accounts_signup WHERE email = '{address}'")

    def mail_status(self, address):
        """The statuses of ADDRESS's outbox rows, in order."""
        return self.sql(
            "SELECT string_agg(m.status, ',' ORDER BY m.id)"
            " FROM accounts_outgoingmail m JOIN accounts_signup s"
            f" ON s.id = m.signup_id WHERE s.email = '{address}'"
        )

    def received(self, address):
        """The messages the SMTP server received for ADDRESS, parsed."""
        listing = self("exec", "-T", "smtp", "python3", "-c", READ_INBOX).stdout
        messages = [
            email.message_from_bytes(
                base64.b64decode(data), policy=email.policy.default
            )
            for data in json.loads(listing)
        ]
        return [m for m in messages if address in m.get_all("X-RcptTo", [])]


def wait_until(condition, *, timeout, what, interval=0.2):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"timed out after {timeout} s: {what}"
        time.sleep(interval)
    return result


@pytest.fixture(scope="module")
def mail_stack(docker_engine, smtp_server_image, run_prefix, tmp_path_factory):
    port = free_port()
    clone = engine.fresh_clone(tmp_path_factory.mktemp("mailclone"))
    # The owner's .env: double opt-in on, links to where the site is reached.
    (clone / ".env").write_text(
        f"SIGNUP_DOUBLE_OPT_IN=true\nDJANGO_PUBLIC_URL=http://127.0.0.1:{port}\n"
    )
    env = site_environment(SIGNUP_BIND_ADDRESS="127.0.0.1", SIGNUP_PORT=port)
    env.pop("DJANGO_SETTINGS_MODULE")
    project = engine.ComposeProject(
        name=f"{run_prefix}-mail",
        files=(*images.compose_files(clone / "compose.yaml"), clone / MAIL_OVERRIDE),
        env=env,
        cwd=clone,
    )
    with project.running():
        yield MailStack(project, port, clone, env)


def confirm_and_unsubscribe_links(message):
    """(confirm URL, unsubscribe URL) of a confirmation MESSAGE, as a mail
    client finds them: the first in the text, the second in the header."""
    body = message.get_body(preferencelist=("plain",)).get_content()
    confirm = re.findall(r"https?://\S+/confirm/[^/\s]+/", body)
    # Django folds the long header onto a second line; whitespace around the
    # <...> does not count (RFC 2369).
    header = str(message["List-Unsubscribe"]).strip()
    unsubscribe = re.fullmatch(r"<(https?://\S+/unsubscribe/[^/\s>]+/)>", header)
    assert len(confirm) == 1, body
    assert unsubscribe, message["List-Unsubscribe"]
    return confirm[0], unsubscribe.group(1)


def test_the_mailer_runs_healthy_on_its_heartbeat(mail_stack):
    listing = mail_stack("ps", "--format", "json").stdout
    services = {
        s["Service"]: s for s in map(json.loads, filter(None, listing.splitlines()))
    }

    assert sorted(services) == ["db", "mailer", "nginx", "smtp", "web"]
    assert services["mailer"]["Health"] == "healthy"
    (mailer,) = mail_stack.container_ids("mailer")
    # Its own healthcheck, not the image's (which asks gunicorn).
    assert "mailer-alive.py" in inspect(mailer, "Config.Healthcheck.Test")
    assert "readyz" not in inspect(mailer, "Config.Healthcheck.Test")
    (web,) = mail_stack.container_ids("web")
    assert inspect(mailer, "Config.Image") == inspect(web, "Config.Image")


def test_a_signup_gets_one_mail_whose_links_confirm_and_unsubscribe(
    mail_stack, report_figure
):
    stack = mail_stack
    address = f"mail-{uuid.uuid4().hex[:8]}@example.com"
    session, form = browser_session(stack)

    response = sign_up(session, stack, {**form, "name": TYPED_NAME, "email": address})
    posted = time.monotonic()

    assert response.status_code == 302, response.text[:500]
    (message,) = wait_until(
        lambda: stack.received(address), timeout=30, what=f"a mail to {address}"
    )
    report_figure(
        f"mailer: sign-up to mail received by SMTP: {time.monotonic() - posted:.1f} s"
    )
    wait_until(
        lambda: stack.mail_status(address) == "sent",
        timeout=10,
        what="the outbox row marked sent",
    )
    # Marked sent after it was delivered, and delivered once.
    assert len(stack.received(address)) == 1

    # As a mail client reads it.
    assert [a.addr_spec for a in message["To"].addresses] == [address]
    assert [a.addr_spec for a in message["From"].addresses] == [SENDER]
    assert message["List-Unsubscribe-Post"] == ONE_CLICK
    assert message["Subject"]
    confirm_url, unsubscribe_url = confirm_and_unsubscribe_links(message)
    assert confirm_url.startswith(stack.base + "/confirm/")
    assert unsubscribe_url.startswith(stack.base + "/unsubscribe/")
    whole = message.as_string()
    for typed in (TYPED_NAME, "pills.example", "Cheap pills"):
        assert typed not in whole
    # The mailer's log names the mail, never the address.
    log = stack("logs", "--no-color", "mailer").stdout
    assert "Sent mail" in log
    assert address not in log

    # The link opens a page with a button; only its POST confirms.
    browser = requests.Session()
    page = browser.get(confirm_url, timeout=10)
    assert page.status_code == 200
    assert stack.status(address) == "pending"
    action = re.search(r'<form method="post" action="([^"]+)"', page.text).group(1)
    confirmed = browser.post(
        stack.base + action,
        data={"csrfmiddlewaretoken": traffic.TOKEN.search(page.text).group(1)},
        headers={"Origin": stack.base, "Referer": confirm_url},
        allow_redirects=False,
        timeout=10,
    )
    assert confirmed.status_code == 200, confirmed.text[:500]
    assert stack.status(address) == "confirmed"
    confirmed_at = stack.sql(
        f"SELECT confirmed_at FROM accounts_signup WHERE email = '{address}'"
    )
    assert confirmed_at

    # RFC 8058's one-click: a POST with only that body, no cookie, no token.
    one_click = requests.post(
        unsubscribe_url,
        data=ONE_CLICK,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        allow_redirects=False,
        timeout=10,
    )
    assert one_click.status_code == 200, one_click.text[:500]
    assert "Location" not in one_click.headers
    assert stack.status(address) == ""
    assert stack.mail_status(address) == ""


def test_the_mailer_stopped_with_a_mail_in_hand_exits_0_in_time_and_loses_it_not(
    mail_stack, report_figure
):
    """With the SMTP server frozen, the mailer holds a mail until its SMTP
    timeout; stopped then, it exits 0 within its grace period, and the mail
    is still queued. Started again with the server back, it sends it once."""
    stack = mail_stack
    (mailer,) = stack.container_ids("mailer")
    config = json.loads(stack("config", "--format", "json").stdout)
    grace = int(config["services"]["mailer"]["stop_grace_period"].removesuffix("s"))
    address = f"inhand-{uuid.uuid4().hex[:8]}@example.com"
    stack("pause", "smtp")
    try:
        session, form = browser_session(stack)
        response = sign_up(
            session, stack, {**form, "name": "In Hand", "email": address}
        )
        assert response.status_code == 302, response.text[:500]
        # In hand: queued, and locked by the mailer's transaction.
        in_hand = (
            "SELECT count(*) FROM (SELECT 1 FROM accounts_outgoingmail m"
            " JOIN accounts_signup s ON s.id = m.signup_id"
            f" WHERE s.email = '{address}' AND m.status = 'queued'"
            " FOR UPDATE OF m SKIP LOCKED) AS free"
        )
        wait_until(
            lambda: (
                stack.mail_status(address) == "queued" and stack.sql(in_hand) == "0"
            ),
            timeout=30,
            what="the mailer holding the mail",
        )
        started = time.monotonic()
        stack("stop", "mailer", timeout=120)
        took = time.monotonic() - started
    finally:
        stack("unpause", "smtp")
    report_figure(
        f"mailer: stopped with a mail in hand in {took:.1f} s (grace {grace} s)"
    )

    assert inspect(mailer, "State.ExitCode") == "0"
    assert took < grace
    assert stack.mail_status(address) == "queued"
    assert "Mailer stopped after sending" in stack("logs", "mailer").stdout

    stack("start", "mailer", timeout=120)
    wait_until(
        lambda: stack.mail_status(address) == "sent",
        timeout=60,
        what="the mail sent after the restart",
    )
    assert len(stack.received(address)) == 1
    wait_until_healthy(mailer)


def test_development_mode_prints_each_mail_in_the_mailer_log(mail_stack):
    """compose.dev.yaml over the same project: no SMTP server named, so the
    mail a sign-up causes shows in `docker compose logs mailer`."""
    stack = mail_stack
    dev = engine.ComposeProject(
        name=stack.project.name,
        files=images.compose_files(
            stack.clone / "compose.yaml", stack.clone / "compose.dev.yaml"
        ),
        env=stack.env,
        cwd=stack.clone,
    )
    dev(
        *("up", "--detach", "--wait", "--wait-timeout", "300", "--remove-orphans"),
        timeout=1200,
    )
    stack.wait_for_site()
    address = f"dev-{uuid.uuid4().hex[:8]}@example.com"
    session, form = browser_session(stack)

    response = sign_up(session, stack, {**form, "name": TYPED_NAME, "email": address})

    assert response.status_code == 302, response.text[:500]

    def printed():
        log = dev("logs", "--no-color", "--no-log-prefix", "mailer").stdout
        # The console backend ends each mail with a line of 79 dashes.
        mails = [part for part in log.split("-" * 79) if f"To: {address}" in part]
        return mails

    (text,) = wait_until(printed, timeout=30, what=f"a mail to {address} in the log")
    start = re.search(r"^Content-Type: ", text, flags=re.MULTILINE).start()
    message = email.message_from_string(text[start:], policy=email.policy.default)
    assert [a.addr_spec for a in message["To"].addresses] == [address]
    assert [a.addr_spec for a in message["From"].addresses] == ["signup@localhost"]
    assert message["List-Unsubscribe-Post"] == ONE_CLICK
    confirm_url, _ = confirm_and_unsubscribe_links(message)
    assert confirm_url.startswith(stack.base + "/confirm/")
    assert TYPED_NAME not in text
    assert stack.status(address) == "pending"
    assert stack.mail_status(address) == "sent"

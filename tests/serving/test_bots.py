"""Scripts against the sign-up form through nginx and gunicorn: 1,000 attempts
of the kinds a spam bot makes store no row, each gets a person's answer (or,
too fast or with an old token, the form again), each is one log line, and the
owner sees how many were refused."""

import html
import itertools
import re
import time

import pytest
import requests

from tests.support.commands import OWNER_PASSWORD, OWNER_USERNAME
from tests.support.forms import TOKEN_FIELD
from tests.support.stack import ServingStack

ATTEMPTS = 1000
RESEND = "Please check your details and send the form again."
INPUT = re.compile(r"<input ([^>]*)>")
ATTRIBUTE = re.compile(r'([a-z-]+)(?:="([^"]*)")?')
# The stack's default, SIGNUP_MIN_FILL_SECONDS unset.
MINIMUM = 1.0


@pytest.fixture(scope="module")
def bot_stack(nginx_binary):
    """A stack of its own, so its refusal counts are this module's alone."""
    from django.conf import settings

    stack = ServingStack(settings.DATABASES["default"]).start()
    yield stack
    stack.stop()


class Bot:
    """A script that fetches the form, as a browser would, and fills in every
    input it finds, hidden ones included."""

    def __init__(self, stack):
        self.stack = stack
        self.session = requests.Session()
        self.session.headers.update(
            {"Host": stack.browser_host, **stack.origin_headers()}
        )
        self.counter = itertools.count()

    def fetch(self):
        page = self.session.get(self.stack.nginx.url("/"), timeout=10)
        assert page.status_code == 200
        inputs = [dict(ATTRIBUTE.findall(tag)) for tag in INPUT.findall(page.text)]
        return {field["name"]: field for field in inputs}

    def fill(self, inputs, *, keep_hidden=True):
        """A value in every input: the page's own in hidden ones (unless told
        otherwise), a plausible one in the rest."""
        number = next(self.counter)
        data = {}
        for name, field in inputs.items():
            kind = field.get("type")
            if kind == "hidden" and keep_hidden:
                data[name] = html.unescape(field["value"])
            elif kind == "email":
                data[name] = f"bot{number}@spam.example"
            else:
                data[name] = f"Cheap pills {number}"
        return data

    def post(self, data):
        return self.session.post(
            self.stack.nginx.url("/"), data=data, allow_redirects=False, timeout=10
        )


def attempts(bot, stack):
    """(kind, data) for ATTEMPTS posts, in turn of six kinds."""
    waited = bot.fetch()
    time.sleep(MINIMUM + 0.2)
    for number in range(ATTEMPTS):
        kind = number % 6
        if kind == 0:  # every input filled, the trap too, sent at once
            yield "trap", bot.fill(bot.fetch())
        elif kind == 1:  # the same after waiting longer than the minimum
            yield "trap", bot.fill(waited)
        elif kind == 2:  # no token
            data = bot.fill(bot.fetch())
            del data[TOKEN_FIELD], data["leave_empty"]
            yield "person", data
        elif kind == 3:  # the hidden inputs filled too: a forged token
            data = bot.fill(bot.fetch(), keep_hidden=False)
            data["csrfmiddlewaretoken"] = bot.fill(waited)["csrfmiddlewaretoken"]
            del data["leave_empty"]
            yield "person", data
        elif kind == 4:  # a token kept for more than a day
            data = bot.fill(waited)
            data[TOKEN_FIELD] = stack.form_token(age=25 * 3600)
            del data["leave_empty"]
            yield "again", data
        else:  # the trap left alone (a bot that reads CSS), sent at once
            data = bot.fill(bot.fetch())
            del data["leave_empty"]
            yield "again", data


def refused_in_log(stack):
    return [
        line
        for line in stack.gunicorn.error_log.lines()
        if "Sign-up refused as automated" in line
    ]


def test_a_thousand_scripted_attempts_store_nothing_and_are_counted(bot_stack):
    stack = bot_stack
    bot = Bot(stack)
    answers = {"person": 0, "again": 0}

    for expected, data in attempts(bot, stack):
        response = bot.post(data)
        if expected in ("trap", "person"):
            assert response.status_code == 302, response.text[:300]
            assert response.headers["Location"] == "/thanks/"
            answers["person"] += 1
        else:
            assert response.status_code == 200
            assert RESEND in response.text
            answers["again"] += 1

    assert stack.signup_count() == 0
    assert sum(answers.values()) == ATTEMPTS
    lines = refused_in_log(stack)
    assert len(lines) == ATTEMPTS
    assert all(
        re.search(r"\(client [0-9.]+, request id [0-9a-f]{32}\)$", line)
        for line in lines
    )
    assert not [
        line for line in stack.gunicorn.error_log.lines() if "Traceback" in line
    ]

    # The workers' last counts reach the table when they exit.
    stack.gunicorn.stop()
    stack.restart_gunicorn()
    with stack.connect() as conn:
        tally = dict(
            conn.execute(
                "SELECT reason, sum(count) FROM accounts_refusaltally GROUP BY reason"
            ).fetchall()
        )
    sixth = ATTEMPTS // 6
    assert tally == {
        "trap": 2 * sixth + 2,
        "no_token": sixth + 1,
        "forged_token": sixth + 1,
        "old_token": sixth,
        "too_fast": sixth,
    }
    owner = stack.admin_session(OWNER_USERNAME, OWNER_PASSWORD)
    changelist = owner.get(stack.nginx.url("/admin/accounts/signup/"), timeout=10)
    assert f"{ATTEMPTS} refused as automated (today {ATTEMPTS})." in changelist.text


def test_a_person_signs_up_and_a_fast_one_with_a_second_click(bot_stack):
    stack = bot_stack
    browser = Bot(stack)

    page = browser.fetch()
    time.sleep(MINIMUM + 0.1)
    person = {
        "csrfmiddlewaretoken": page["csrfmiddlewaretoken"]["value"],
        TOKEN_FIELD: page[TOKEN_FIELD]["value"],
        "name": "Ada Lovelace",
        "email": "ada@example.com",
        "leave_empty": "",
    }
    stored = browser.post(person)

    fast = {**person, TOKEN_FIELD: browser.fetch()[TOKEN_FIELD]["value"]}
    fast["email"] = "grace@example.com"
    again = browser.post(fast)
    assert again.status_code == 200
    assert RESEND in again.text
    assert 'value="grace@example.com"' in again.text
    time.sleep(MINIMUM + 0.1)
    fresh = re.search(rf'name="{TOKEN_FIELD}" value="([^"]+)"', again.text).group(1)
    second_click = browser.post({**fast, TOKEN_FIELD: fresh})

    assert stored.status_code == second_click.status_code == 302
    assert stack.signups("ada@example.com") == [("Ada Lovelace", "ada@example.com")]
    assert stack.signups("grace@example.com") == [("Ada Lovelace", "grace@example.com")]

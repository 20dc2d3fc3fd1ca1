"""
The benchmark's own parts that decide what its figures mean: the ceiling app
does the site's job honestly (token and Origin checked, one row per address,
a redirect), the loader's sign-ups are valid and unique, a target spec reads
as documented, and the mailer's figures are held to their limits.
"""

import io
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

import pytest
from django.core.validators import EmailValidator
from django.db import connection

from accounts.forms import SignupForm
from accounts.models import Signup
from bench import ceiling
from bench.loader import load, rows, secondary_indexes
from bench.report import mail_checks
from bench.stack import TargetSpec

HOST = "localhost:8080"


@pytest.fixture
def ceiling_app(monkeypatch):
    """bench.ceiling.application on the test database."""
    params = connection.settings_dict
    for name, value in {
        "POSTGRES_HOST": params["HOST"],
        "POSTGRES_PORT": params["PORT"],
        "POSTGRES_USER": params["USER"],
        "POSTGRES_PASSWORD": params["PASSWORD"] or "",
        "POSTGRES_DB": params["NAME"],
    }.items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.setattr(ceiling, "_connection", None)
    yield call
    if ceiling._connection is not None:
        ceiling._connection.close()


def call(method, *, body=b"", cookie=None, origin=None):
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": "/",
        "HTTP_HOST": HOST,
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "CONTENT_LENGTH": str(len(body)),
    }
    if cookie:
        environ["HTTP_COOKIE"] = f"other=1; csrftoken={cookie}"
    if origin:
        environ["HTTP_ORIGIN"] = origin
    answered = {}

    def start_response(status, headers):
        answered["status"], answered["headers"] = status, dict(headers)

    content = b"".join(ceiling.application(environ, start_response))
    return answered["status"], answered["headers"], content.decode()


def sign_up(app, token, cookie, email, origin=f"http://{HOST}"):
    body = urlencode(
        {"csrfmiddlewaretoken": token, "name": "Ada Lovelace", "email": email}
    ).encode()
    return app("POST", body=body, cookie=cookie, origin=origin)


def test_the_form_carries_the_token_of_its_cookie(ceiling_app):
    status, headers, page = ceiling_app("GET")

    assert status == "200 OK"
    token = headers["Set-Cookie"].split(";")[0].removeprefix("csrftoken=")
    assert len(token) == 64
    assert f'name="csrfmiddlewaretoken" value="{token}"' in page
    assert headers["X-Frame-Options"] == "DENY"
    again = ceiling_app("GET", cookie=token)[2]
    assert f'value="{token}"' in again


@pytest.mark.django_db(transaction=True)
def test_a_sign_up_is_one_row_whatever_the_case(ceiling_app):
    _status, headers, _page = ceiling_app("GET")
    token = headers["Set-Cookie"].split(";")[0].removeprefix("csrftoken=")

    first = sign_up(ceiling_app, token, token, "ada@example.com")
    second = sign_up(ceiling_app, token, token, "ADA@Example.COM")

    assert first[0] == second[0] == "302 Found"
    assert first[1]["Location"] == second[1]["Location"] == "/thanks/"
    assert list(Signup.objects.values_list("email", flat=True)) == ["ada@example.com"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("token", "cookie", "origin"),
    [
        ("a" * 64, "b" * 64, f"http://{HOST}"),
        ("a" * 64, None, f"http://{HOST}"),
        ("", "a" * 64, f"http://{HOST}"),
        ("a" * 64, "a" * 64, "http://evil.example"),
    ],
)
def test_a_forged_sign_up_is_refused(ceiling_app, token, cookie, origin):
    status, _headers, _page = sign_up(
        ceiling_app, token, cookie, "eve@example.com", origin=origin
    )

    assert status == "403 Forbidden"
    assert not Signup.objects.exists()


def test_loaded_sign_ups_are_valid_unique_and_in_time_order():
    # A fixed "now": the times count back from it, and two calls a second
    # apart would otherwise differ by that second.
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    sample = list(rows(5000, seed=7, now=now))

    assert sample == list(rows(5000, seed=7, now=now))
    emails = [email.lower() for _name, email, _when in sample]
    assert len(set(emails)) == len(emails)
    validate = EmailValidator(allowlist=[])
    for name, email, _when in sample[:1000]:
        validate(email)
        form = SignupForm({"name": name, "email": email})
        assert form.is_valid(), (name, email, form.errors)
    times = [when for _name, _email, when in sample]
    assert times == sorted(times)
    assert any(not name.isascii() for name, _email, _when in sample)


@pytest.mark.django_db(transaction=True)
def test_the_loader_copies_and_keeps_every_index():
    connection.ensure_connection()
    before = secondary_indexes(connection.connection)

    timings = load(connection.connection, 2000, seed=3)

    assert Signup.objects.count() == 2000
    assert secondary_indexes(connection.connection) == before
    assert set(timings["indexes"]) == {name for name, _ in before}
    assert Signup.objects.filter(name__icontains="owalsk").exists()


def test_a_target_spec_reads_as_documented():
    spec = TargetSpec.parse(
        "lean=site,WEB_CONCURRENCY=2,DJANGO_SETTINGS_MODULE=x.y,template=nginx/t"
    )

    assert (spec.name, spec.kind) == ("lean", "site")
    assert spec.env == {"WEB_CONCURRENCY": "2", "DJANGO_SETTINGS_MODULE": "x.y"}
    assert spec.template == Path("nginx/t").resolve()
    assert TargetSpec.parse("ceiling").kind == "ceiling"
    with pytest.raises(ValueError, match="site or ceiling"):
        TargetSpec.parse("x=flask")


def test_a_target_confirms_when_its_site_has_double_opt_in_on():
    assert TargetSpec.parse("o=site,SIGNUP_DOUBLE_OPT_IN=true").confirming
    assert TargetSpec.parse("o=site,SIGNUP_DOUBLE_OPT_IN=On").confirming
    assert not TargetSpec.parse("o=site,SIGNUP_DOUBLE_OPT_IN=false").confirming
    assert not TargetSpec.parse("site").confirming
    # The ceiling app has no double opt-in, whatever its environment says.
    assert not TargetSpec.parse("c=ceiling,SIGNUP_DOUBLE_OPT_IN=true").confirming


def mail_results(rate, p95, accepted=100, twice=0):
    backlog = {"mails": 100, "accepted": accepted, "missing": 100 - accepted}
    backlog |= {"mails_per_s": rate, "twice": twice}
    steady = {"signups": 40, "stored": 40, "accepted": 40, "errors": 0}
    steady |= {"rate": 20, "latency_s_p95": p95, "missing": 0, "twice": 0}
    return {"backlog": backlog, "steady": steady}


@pytest.mark.parametrize(
    ("results", "met"),
    [
        (mail_results(rate=200.0, p95=1.99), [True, True, True, True]),
        (mail_results(rate=199.9, p95=2.0), [False, True, False, True]),
        (mail_results(rate=300.0, p95=0.5, accepted=99), [True, False, True, True]),
        (mail_results(rate=300.0, p95=0.5, twice=1), [True, False, True, True]),
    ],
)
def test_the_mail_targets_hold_the_figures_to_their_limits(results, met):
    assert [check[3] for check in mail_checks(results)] == met

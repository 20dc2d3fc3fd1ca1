"""
Hostile and odd input through nginx, against the sign-up form and the admin
search. Whatever arrives, the answer is a form error (200) or a 4xx, never a
5xx; a rejected input stores nothing; an accepted one is stored exactly and
escaped wherever it is shown.
"""

import html
import uuid

import pytest

from tests.support.forms import TOKEN_FIELD

ADMIN_PASSWORD = "bad input admin passphrase"

# (case id, name, email or None for a fresh valid one, expected outcome)
CASES = [
    ("empty-name", "", None, "error"),
    ("whitespace-name", " \t  ", None, "error"),
    ("name-257", "x" * 257, None, "error"),
    ("name-256", "y" * 256, None, "stored"),
    ("no-at", "Ada", "plainaddress", "error"),
    ("no-tld", "Ada", "ada@example", "error"),
    ("localhost", "Ada", "ada@localhost", "error"),
    ("double-dot", "Ada", "ada..lovelace@example.com", "error"),
    ("trailing-dot-domain", "Ada", "ada@example..com", "error"),
    ("email-too-long", "Ada", "a" * 250 + "@example.com", "error"),
    ("email-whitespace", "Ada", "   ", "error"),
    ("idn-domain", "Ada", "ada-{id}@bücher.example", "stored"),
    ("punycode-domain", "Ada", "ada-{id}@xn--bcher-kva.example", "stored"),
    ("ip-literal", "Ada", "ada-{id}@[192.0.2.1]", "error"),
    ("quoted-markup", "Ada", '"<b>{id}</b>"@example.com', "stored"),
    ("unicode-local-part", "Ada", "ädä-{id}@example.com", "error"),
    ("nul-name", "Ada\x00Lovelace", None, "error"),
    ("nul-email", "Ada", "ada\x00{id}@example.com", "error"),
    ("escape-char", "Ada\x1b[31m", None, "error"),
    ("delete-char", "Ada\x7f", None, "error"),
    ("newline", "Ada\r\nSet-Cookie: x=1", None, "error"),
    ("rtl-override", "\u202egnp.exe", None, "error"),
    ("rtl-isolate", "abc\u2067def", None, "error"),
    ("emoji", "Ada 🧪🎉", None, "stored"),
    ("combining-marks", "Z\u0351\u0352a\u0353l\u0354g\u0355o", None, "stored"),
    ("arabic", "ادا لوفلايس", None, "stored"),
    ("zero-width-joiner", "👩\u200d💻 Ada", None, "stored"),
    ("markup", '<script>alert("x")</script>', None, "stored"),
    ("attribute-break", '" onmouseover="alert(1)', None, "stored"),
    ("template", "{{ settings.SECRET_KEY }}{% debug %}", None, "stored"),
    ("sql", "Robert'); DROP TABLE accounts_signup;--", None, "stored"),
    ("csv-formula", '=HYPERLINK("http://x","y")', None, "stored"),
    ("percent-literal", "100% %27 %ZZ", None, "stored"),
]


def email_for(case_id, email):
    unique = f"{case_id}-{uuid.uuid4().hex[:6]}"
    if email is None:
        return f"{unique}@example.com"
    return email.replace("{id}", unique)


def assert_never_5xx(response):
    assert response.status_code < 500, response.text[:500]


@pytest.mark.parametrize(
    ("case_id", "name", "email", "outcome"), CASES, ids=[c[0] for c in CASES]
)
def test_form_input(serving_stack, case_id, name, email, outcome):
    stack = serving_stack
    email = email_for(case_id, email)
    before = stack.signup_count()

    response = stack.sign_up(name, email)

    assert_never_5xx(response)
    if outcome == "error":
        assert response.status_code == 200
        assert 'class="errorlist"' in response.text
        assert stack.signup_count() == before
        # What was typed comes back escaped, never as markup.
        if "<" in name:
            assert name not in response.text
    else:
        assert response.status_code == 302, response.text[:800]
        assert response.headers["Location"] == "/thanks/"
        assert stack.signups(email) == [(name.strip(), email)]


def post_raw(stack, body, content_type="application/x-www-form-urlencoded"):
    token, cookie = stack.csrf_pair()
    body = body.replace(b"TOKEN", token.encode())
    if content_type == "application/x-www-form-urlencoded":
        body += f"&{TOKEN_FIELD}={stack.form_token()}".encode()
    return stack.post(
        "/",
        data=body,
        headers={
            "Content-Type": content_type,
            "Cookie": f"csrftoken={cookie}",
            "Origin": f"http://localhost:{stack.nginx.port}",
        },
    )


@pytest.mark.parametrize(
    ("name", "status", "message"),
    [
        pytest.param(b"Ada%FF%FELovelace", 200, "malformed text", id="form-error"),
        # Not percent-encoded: Django would decode the body as Latin-1 ("ÿþ").
        pytest.param(b"\xff\xfe", 400, "Bad request", id="raw-bytes-refused"),
    ],
)
def test_a_name_that_is_not_utf8_stores_nothing(serving_stack, name, status, message):
    before = serving_stack.signup_count()
    email = email_for("not-utf8", None)

    response = post_raw(
        serving_stack,
        b"csrfmiddlewaretoken=TOKEN&name=" + name + b"&email=" + email.encode(),
    )

    assert response.status_code == status
    assert message in response.text
    assert serving_stack.signups(email) == []
    assert serving_stack.signup_count() == before


def test_a_repeated_field_takes_its_last_value(serving_stack):
    email = email_for("repeated", None)

    response = post_raw(
        serving_stack,
        b"csrfmiddlewaretoken=TOKEN&name=First&name=Last&email=" + email.encode(),
    )

    assert response.status_code == 302
    assert serving_stack.signups(email) == [("Last", email)]


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b'{"name": "Ada", "email": "json@example.com"}'),
        ("text/plain", b"name=Ada&email=plain@example.com"),
        ("application/xml", b"<signup><name>Ada</name></signup>"),
        ("multipart/form-data", b"not really multipart"),
    ],
)
def test_wrong_content_types_get_4xx_and_store_nothing(
    serving_stack, content_type, body
):
    before = serving_stack.signup_count()

    response = post_raw(serving_stack, body, content_type)

    assert 400 <= response.status_code < 500
    assert serving_stack.signup_count() == before


def test_a_real_multipart_form_works(serving_stack):
    token, cookie = serving_stack.csrf_pair()
    email = email_for("multipart", None)

    response = serving_stack.post(
        "/",
        files={
            "csrfmiddlewaretoken": (None, token),
            "name": (None, "Multi Part"),
            "email": (None, email),
            TOKEN_FIELD: (None, serving_stack.form_token()),
        },
        headers={
            "Cookie": f"csrftoken={cookie}",
            "Origin": f"http://localhost:{serving_stack.nginx.port}",
        },
    )

    assert response.status_code == 302
    assert serving_stack.signups(email) == [("Multi Part", email)]


@pytest.mark.parametrize(
    "method", ["PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "PROPFIND", "FOO"]
)
def test_unsupported_methods_get_4xx(serving_stack, method):
    response = serving_stack.request(method, "/")

    assert 400 <= response.status_code < 500


@pytest.fixture(scope="module")
def admin_session(serving_stack):
    return serving_stack.admin_session("badinput", ADMIN_PASSWORD)


SEARCHES = [
    "",
    "   ",
    "a\x00b",
    "%",
    "_",
    "\\",
    "' OR 1=1 --",
    "<script>alert(1)</script>",
    "{{ 7*7 }}",
    "ä" * 500,
    "x" * 3000,
    "🧪",
    "\u202e",
    "=cmd|' /C calc'!A0",
]


@pytest.mark.parametrize("query", SEARCHES)
def test_admin_search_input(serving_stack, admin_session, query):
    response = admin_session.get(
        serving_stack.nginx.url("/admin/accounts/signup/"),
        params={"q": query},
        timeout=10,
    )

    assert response.status_code == 200, response.text[:500]
    if "<" in query:
        assert query not in response.text
        assert html.escape(query, quote=False) in response.text


@pytest.mark.parametrize(
    "query", ["email=%00", "name=%00", "name__contains=x%00", "name__regex=("]
)
def test_admin_filter_input(serving_stack, admin_session, query):
    response = admin_session.get(
        serving_stack.nginx.url(f"/admin/accounts/signup/?{query}"),
        timeout=10,
        allow_redirects=False,
    )

    assert response.status_code == 302, response.text[:500]
    assert response.headers["Location"] == "/admin/accounts/signup/?e=1"


def test_admin_search_with_invalid_utf8_in_the_url(serving_stack, admin_session):
    response = admin_session.get(
        serving_stack.nginx.url("/admin/accounts/signup/?q=%FF%FE%00"), timeout=10
    )

    assert response.status_code in (200, 400)


def test_stored_markup_is_escaped_in_the_admin_list(serving_stack, admin_session):
    name = f"<img src=x onerror=alert('{uuid.uuid4().hex[:6]}')>"
    serving_stack.sign_up(name, email_for("escaped", None))

    page = admin_session.get(
        serving_stack.nginx.url("/admin/accounts/signup/"), timeout=10
    ).text

    assert name not in page
    assert html.escape(name, quote=False) in page or html.escape(name) in page


def test_no_traceback_in_the_logs_after_all_that(serving_stack):
    """Runs after the cases above (pytest keeps file order)."""
    assert not serving_stack.gunicorn.access_log.matching("Traceback")
    assert not serving_stack.gunicorn.error_log.matching("Traceback")

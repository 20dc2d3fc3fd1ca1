"""Bad input gets a message next to its field and stores nothing."""

import re

import pytest

from accounts.models import Signup
from tests.support.forms import signed, signed_body

pytestmark = pytest.mark.django_db

NAME_REQUIRED = "Please enter your name."
EMAIL_REQUIRED = "Please enter your email address."
EMAIL_INVALID = "Please enter a valid email address, like name@example.com."
CONTROL = "Names cannot contain control characters or malformed text."
NUL = "Null characters are not allowed."


def too_long(limit):
    return f"Ensure this value has at most {limit} characters"


INVALID_EMAILS = {
    "no-at": "not-an-email",
    "no-domain": "ada@",
    "no-local-part": "@example.com",
    "two-ats": "ada@@example.com",
    "no-tld": "ada@example",
    "localhost": "ada@localhost",
    "ipv4-literal": "ada@[192.0.2.1]",
    "ipv6-literal": "ada@[2001:db8::1]",
    "space": "ada example@example.com",
    "underscore-domain": "ada@exa_mple.com",
    "markup-email": "<script>@example.com",
}
# Names with what could hide or reorder them where they are shown later.
CONTROL_NAMES = {
    "control-char": "Ada\x07Bell",
    "newline": "Ada\nLovelace",
    "c1-control-char": "Ada\x85Bell",
    "rtl-override": "abc\u202edcba",
    "rtl-isolate": "Ada\u2067Bell",
    "replacement-char": "Ada\ufffdBell",
}

INVALID = [
    pytest.param(
        {}, {"name": NAME_REQUIRED, "email": EMAIL_REQUIRED}, id="missing-both"
    ),
    pytest.param(
        {"email": "a@example.com"}, {"name": NAME_REQUIRED}, id="missing-name"
    ),
    pytest.param({"name": "Ada"}, {"email": EMAIL_REQUIRED}, id="missing-email"),
    pytest.param(
        {"name": "", "email": ""},
        {"name": NAME_REQUIRED, "email": EMAIL_REQUIRED},
        id="blank",
    ),
    pytest.param(
        {"name": " \t ", "email": "  "},
        {"name": NAME_REQUIRED, "email": EMAIL_REQUIRED},
        id="whitespace",
    ),
    pytest.param(
        {"name": "x" * 257, "email": "a@example.com"},
        {"name": too_long(256)},
        id="name-too-long",
    ),
    pytest.param(
        {"name": "Ada", "email": "a" * 64 + "@" + "b" * 186 + ".com"},
        {"email": too_long(254)},
        id="email-too-long",
    ),
    *(
        pytest.param({"name": "Ada", "email": email}, {"email": EMAIL_INVALID}, id=case)
        for case, email in INVALID_EMAILS.items()
    ),
    pytest.param(
        {"name": "Ada\x00", "email": "a@example.com"}, {"name": NUL}, id="nul-name"
    ),
    pytest.param(
        {"name": "Ada", "email": "a\x00@example.com"}, {"email": NUL}, id="nul-email"
    ),
    *(
        pytest.param(
            {"name": name, "email": "a@example.com"}, {"name": CONTROL}, id=case
        )
        for case, name in CONTROL_NAMES.items()
    ),
]


@pytest.mark.parametrize(("data", "errors"), INVALID)
def test_invalid_input_rerenders_with_messages_and_stores_nothing(client, data, errors):
    response = client.post("/", signed(data))

    assert response.status_code == 200
    assert Signup.objects.count() == 0
    form = response.context["form"]
    assert set(form.errors) == set(errors)
    html = response.content.decode()
    for field, message in errors.items():
        assert message in " ".join(form.errors[field])
        # Each message once (a second validator once repeated "invalid").
        assert len(set(form.errors[field])) == len(form.errors[field])
        assert f'<ul class="errorlist" id="id_{field}_error">' in html
        assert f'aria-describedby="id_{field}_error"' in html
    assert 'role="alert"' in html


def test_first_invalid_field_gets_the_focus_and_values_are_kept(client):
    response = client.post("/", signed({"name": "Ada", "email": "broken"}))

    html = response.content.decode()
    assert 'value="Ada"' in html
    assert 'value="broken"' in html
    email_input = re.search(r'<input [^>]*id="id_email">', html).group()
    name_input = re.search(r'<input [^>]*id="id_name">', html).group()
    assert "autofocus" in email_input
    assert "autofocus" not in name_input


VALID = [
    pytest.param(
        "Zoë Åsa Ñúñez", "zoe@example.com", "zoe@example.com", id="latin-diacritics"
    ),
    pytest.param("山田 太郎", "taro@example.jp", "taro@example.jp", id="cjk"),
    pytest.param("محمد", "m@example.com", "m@example.com", id="arabic"),
    pytest.param("Emoji 🎉 Fan", "fan@example.com", "fan@example.com", id="emoji"),
    pytest.param(
        "e\u0301tienne",
        "e@example.com",
        "e@example.com",
        id="combining-mark-kept-unnormalised",
    ),
    pytest.param("x" * 256, "long@example.com", "long@example.com", id="name-at-limit"),
    pytest.param("  Ada  ", "  ada@example.com  ", "ada@example.com", id="trimmed"),
    pytest.param("Ada", "Ada@EXAMPLE.COM", "Ada@example.com", id="domain-lowercased"),
    pytest.param(
        "Ada", "ada+news@example.com", "ada+news@example.com", id="plus-tag-kept"
    ),
    pytest.param("Ada", "ada@bücher.example", "ada@bücher.example", id="idn-domain"),
    pytest.param(
        "<b>Bold</b> & 'quotes'", "b@example.com", "b@example.com", id="markup-name"
    ),
    pytest.param(
        "'; DROP TABLE accounts_signup; --",
        "sql@example.com",
        "sql@example.com",
        id="sql-text",
    ),
    pytest.param(
        "{{ 7*7 }} {% now 'Y' %}",
        "tpl@example.com",
        "tpl@example.com",
        id="template-text",
    ),
]


@pytest.mark.parametrize(("name", "email", "stored_email"), VALID)
def test_valid_input_is_stored_exactly(client, name, email, stored_email):
    response = client.post("/", signed({"name": name, "email": email}))

    assert response.status_code == 302
    signup = Signup.objects.get()
    assert signup.name == name.strip()
    assert signup.name.encode() == name.strip().encode()
    assert signup.email == stored_email


def test_markup_in_a_rejected_submission_is_escaped_when_shown_again(client):
    response = client.post(
        "/", signed({"name": '"><script>alert(1)</script>', "email": "x"})
    )

    html = response.content.decode()
    assert "<script>alert(1)</script>" not in html
    assert "&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in html


@pytest.mark.parametrize(
    "body",
    [
        b"name=\xff\xfe&email=raw@example.com",
        b"name=Ada&email=raw\xe9@example.com",
        b"name=\xc3&email=raw@example.com",  # a UTF-8 sequence cut short
    ],
)
def test_a_body_that_is_not_utf8_is_refused_and_stores_nothing(client, body):
    response = client.post("/", body, content_type="application/x-www-form-urlencoded")

    assert response.status_code == 400
    assert Signup.objects.count() == 0


def test_raw_utf8_in_a_body_is_read_as_utf8(client):
    response = client.post(
        "/",
        signed_body("name=Zoë&email=zoe@example.com".encode()),
        content_type="application/x-www-form-urlencoded",
    )

    assert response.status_code == 302
    assert Signup.objects.get().name == "Zoë"

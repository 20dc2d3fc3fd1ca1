"""
The log line of a refused request (signup_site.hardening), in
process: it names the client nginx saw and the request id, on one line,
without a traceback.
"""

import logging

import pytest

from signup_site.hardening import RefusedRequestFilter


@pytest.fixture
def console(caplog):
    """What the site's console handler would write: records after its filter."""
    caplog.handler.addFilter(RefusedRequestFilter())
    caplog.set_level(logging.INFO)
    yield caplog
    caplog.handler.removeFilter(caplog.handler.filters[-1])


def test_a_disallowed_host_is_one_line_naming_the_client(client, console):
    response = client.get(
        "/",
        headers={
            "Host": "evil.example\nforged line",
            "X-Forwarded-For": "203.0.113.9",
            "X-Request-ID": "0123abcd",
        },
        REMOTE_ADDR="10.0.0.2",
    )

    assert response.status_code == 400
    [record] = [r for r in console.records if r.name.startswith("django.")]
    line = console.handler.format(record)
    assert record.name == "django.security.DisallowedHost"
    assert "\n" not in line
    assert "evil.example\\nforged line" in line
    assert line.endswith("(status 400, client 203.0.113.9, request id 0123abcd)")


def test_without_nginx_the_client_is_the_peer(client, console):
    response = client.post(
        "/",
        "&".join(f"f{number}=" for number in range(1001)),
        content_type="application/x-www-form-urlencoded",
        headers={"Host": "localhost"},
        REMOTE_ADDR="10.0.0.2",
    )

    assert response.status_code == 400
    [record] = [r for r in console.records if r.name.startswith("django.")]
    assert record.name == "django.security.TooManyFieldsSent"
    assert record.exc_info is None
    assert record.getMessage().endswith("(status 400, client 10.0.0.2, request id -)")


def test_a_page_not_found_is_left_to_the_access_log(client, console):
    response = client.get("/no-such-page/", headers={"Host": "localhost"})

    assert response.status_code == 404
    assert [r for r in console.records if r.name.startswith("django.")] == []

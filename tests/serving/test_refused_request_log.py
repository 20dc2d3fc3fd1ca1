"""
A request refused for what the client sent (a disallowed Host, too many
fields, a body that cannot be parsed) leaves one line in gunicorn's log, with
the client and nginx's request id, and no traceback: a flood of them cannot
fill the disk with tracebacks.
"""

import pytest

TOO_MANY_FIELDS = "&".join(f"f{number}=" for number in range(1001))
HOSTILE_REQUESTS = {
    "disallowed-host": {"method": "GET", "headers": {"Host": "evil.example"}},
    "too-many-fields": {
        "method": "POST",
        "data": TOO_MANY_FIELDS,
        "headers": {"Content-Type": "application/x-www-form-urlencoded"},
    },
    "malformed-multipart": {
        "method": "POST",
        "data": b"not really multipart",
        "headers": {"Content-Type": "multipart/form-data"},
    },
}
EXPECTED_MESSAGES = {
    "disallowed-host": "django.security.DisallowedHost Invalid HTTP_HOST header",
    "too-many-fields": "django.security.TooManyFieldsSent The number of GET/POST",
    "malformed-multipart": "django.request Bad request (Unable to parse request body)",
}


def refuse(stack, case):
    """Send CASE, with a valid CSRF cookie so that the body gets read; return
    the request id nginx gave it."""
    request = dict(HOSTILE_REQUESTS[case])
    _token, cookie = stack.csrf_pair()
    request["headers"] = {
        **stack.origin_headers(),
        "Cookie": f"csrftoken={cookie}",
        **request["headers"],
    }
    response = stack.request(request.pop("method"), "/", **request)
    assert response.status_code == 400, response.text[:300]
    return response.headers["X-Request-ID"]


@pytest.mark.parametrize("case", HOSTILE_REQUESTS)
def test_a_refused_request_logs_one_line_without_a_traceback(serving_stack, case):
    log = serving_stack.gunicorn.error_log
    start = len(log.lines())

    request_id = refuse(serving_stack, case)
    line = log.wait_for_line(f"request id {request_id})")
    # A second refusal, logged after everything the first one wrote.
    later_id = refuse(serving_stack, "disallowed-host")
    log.wait_for_line(f"request id {later_id})")

    assert EXPECTED_MESSAGES[case] in line
    assert "(status 400, client 127.0.0.1, " in line
    written = log.lines()[start:]
    assert [text for text in written if request_id in text] == [line]
    assert not [text for text in written if "Traceback" in text]

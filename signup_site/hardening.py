"""
What the site adds to Django's defences against a hostile or broken client
(docs/security.md): a form body that is not UTF-8 is refused, a refused
request is logged in one line, and error reports mask the database URL.
"""

import logging
import re

from django.core.exceptions import BadRequest
from django.views.debug import SafeExceptionReporterFilter

# Enough for any address list a proxy chain sends; the rest is cut off.
MAX_CLIENT_LENGTH = 200


class FormEncodingMiddleware:
    """400 for a urlencoded body that is not UTF-8, before anything reads it:
    Django would decode it as Latin-1 and store bytes FF FE as "ÿþ". (Bad
    percent-encoded bytes become U+FFFD, which the form refuses itself.)"""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        urlencoded = request.content_type == "application/x-www-form-urlencoded"
        if urlencoded and request.method not in ("GET", "HEAD"):
            try:
                request.body.decode("utf-8")
            except UnicodeDecodeError:
                raise BadRequest("The form data is not valid UTF-8.") from None
        return self.get_response(request)


def one_line(text):
    """TEXT with line breaks and other unprintable characters escaped."""
    return "".join(
        char if char.isprintable() else char.encode("unicode_escape").decode("ascii")
        for char in text
    )


def describe_client(request):
    """(client, request id) of REQUEST: the X-Forwarded-For nginx sets, else
    the peer, and nginx's request id, as in the access logs."""
    meta = getattr(request, "META", {})
    client = meta.get("HTTP_X_FORWARDED_FOR") or meta.get("REMOTE_ADDR") or "-"
    request_id = meta.get("HTTP_X_REQUEST_ID") or "-"
    return one_line(client[:MAX_CLIENT_LENGTH]), one_line(request_id[:100])


class RefusedRequestFilter(logging.Filter):
    """A request refused for what the client sent (django.security.*, or a
    4xx with an exception) becomes one line without a traceback, so a flood
    cannot fill the disk; other 4xx records are dropped (the access log has
    them); anything else, 5xx included, passes as it is."""

    def filter(self, record):
        if getattr(record, "refused_request", False):
            return True  # already rewritten, for another handler
        status = getattr(record, "status_code", None)
        refused = status is not None and 400 <= status < 500
        if record.name == "django.request" and refused and not record.exc_info:
            return False
        if not (record.name.startswith("django.security") or refused):
            return True
        client, request_id = describe_client(getattr(record, "request", None))
        message = one_line(record.getMessage())
        record.msg = "%s (status %s, client %s, request id %s)"
        record.args = (message, status, client, request_id)
        record.exc_info = record.exc_text = record.stack_info = None
        record.refused_request = True
        return True


class SecretMaskingFilter(SafeExceptionReporterFilter):
    """Django's masking, plus a database URL, whose value holds a password."""

    hidden_settings = re.compile(
        SafeExceptionReporterFilter.hidden_settings.pattern + "|DATABASE_URL|DSN",
        flags=re.IGNORECASE,
    )

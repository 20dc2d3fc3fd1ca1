"""
One log line for each request the site refuses because of what the client
sent, never a traceback.

Django logs a SuspiciousOperation (a disallowed Host, too many fields) on a
django.security.* logger, and a body it cannot parse on django.request, each
with the exception's traceback: a flood of hostile requests would fill the
disk with tracebacks that say nothing new. Each becomes one line naming the
client (the X-Forwarded-For nginx sets, else the peer) and nginx's request id,
which match the access logs' lines. Errors of the site itself (5xx) keep their
traceback; other 4xx answers are in the access logs and are not logged here.
"""

import logging

UNKNOWN = "-"
# Enough for any address list a proxy chain sends; the rest is cut off.
MAX_CLIENT_LENGTH = 200


def one_line(text):
    """TEXT with line breaks and other unprintable characters escaped."""
    return "".join(
        char if char.isprintable() else char.encode("unicode_escape").decode("ascii")
        for char in text
    )


def describe_client(request):
    """(client, request id) of REQUEST, as the log line names them."""
    meta = getattr(request, "META", {})
    client = meta.get("HTTP_X_FORWARDED_FOR") or meta.get("REMOTE_ADDR") or UNKNOWN
    request_id = meta.get("HTTP_X_REQUEST_ID") or UNKNOWN
    return one_line(client[:MAX_CLIENT_LENGTH]), one_line(request_id[:100])


class RefusedRequestFilter(logging.Filter):
    """For the console handler: rewrites each record of a refused request
    (django.security.*, or a 4xx with an exception on django.request) to one
    line, drops django.request's other 4xx records, passes anything else."""

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

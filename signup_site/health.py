"""
How the site answers for its database: the liveness and readiness probes, and
the 503 page when the database does not answer.
"""

import logging
from functools import cache

from django.db import DatabaseError, InterfaceError, OperationalError, connection
from django.db.migrations.loader import MigrationLoader
from django.http import HttpResponse, JsonResponse
from django.template.loader import render_to_string
from psycopg.errors import UndefinedTable

LIVENESS_PATH = "/healthz"
READINESS_PATH = "/readyz"
RETRY_AFTER_SECONDS = 10

logger = logging.getLogger(__name__)


@cache
def expected_migrations():
    """Every migration on disk, as (app_label, name); read once per process."""
    loader = MigrationLoader(None, ignore_no_migrations=True)
    return frozenset(loader.graph.nodes)


def readiness():
    """Return (ready, reason): the database answers and nothing is unapplied."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT app, name FROM django_migrations")
            applied = set(cursor.fetchall())
    except DatabaseError as exc:
        # Never bootstrapped only if the table is missing, told by PostgreSQL's
        # error class: a refused permission or a lock timeout quotes it too.
        logger.warning("readiness: database check failed: %s", exc)
        if isinstance(exc.__cause__, UndefinedTable):
            return False, "migrations pending"
        return False, "database unavailable"
    if expected_migrations() - applied:
        return False, "migrations pending"
    return True, "ready"


class HealthCheckMiddleware:
    """First of all, so a probe is answered for any Host, without sessions or
    an HTTPS redirect; one through nginx (which sets X-Forwarded-For) is held
    to ALLOWED_HOSTS."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        probe = request.path in (LIVENESS_PATH, READINESS_PATH)
        if not probe or request.method not in ("GET", "HEAD"):
            return self.get_response(request)
        if "HTTP_X_FORWARDED_FOR" in request.META:
            request.get_host()  # DisallowedHost (400) for an unknown host
        ready, status = (True, "ok") if request.path == LIVENESS_PATH else readiness()
        response = JsonResponse({"status": status}, status=200 if ready else 503)
        response["Cache-Control"] = "no-store"
        return response


class DatabaseUnavailableMiddleware:
    """A database that does not answer is an outage, not a bug: the visitor
    gets the 503 page with Retry-After, and the log one line, no traceback."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        where = f"{request.method} {request.path}"
        reason = str(exception).strip().partition("\n")[0]
        logger.warning("database unavailable during %s: %s", where, reason)
        return HttpResponse(
            render_to_string("503.html"),
            status=503,
            headers={"Retry-After": RETRY_AFTER_SECONDS, "Cache-Control": "no-store"},
        )

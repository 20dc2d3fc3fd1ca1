"""
Liveness and readiness probes.

They are answered by a middleware that sits before everything else, so a
container healthcheck or an orchestrator gets an answer whatever Host header it
sends (``localhost``, an IP, a pod name) and without sessions, CSRF or an HTTPS
redirect getting involved. A probe that came through nginx (which always sets
X-Forwarded-For) is held to ALLOWED_HOSTS like any other request, so from
outside an unknown Host never gets a 200.
"""

import logging
from functools import cache

from django.db import DatabaseError, connection
from django.db.migrations.loader import MigrationLoader
from django.http import JsonResponse
from psycopg.errors import UndefinedTable

LIVENESS_PATH = "/healthz"
READINESS_PATH = "/readyz"
PROBES = (LIVENESS_PATH, READINESS_PATH)

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
        # Only a missing django_migrations table is a database that was never
        # bootstrapped, told by PostgreSQL's error class: a refused permission
        # or a lock timeout quotes the table too, and is a database that
        # cannot be used now.
        logger.warning("readiness: database check failed: %s", exc)
        if isinstance(exc.__cause__, UndefinedTable):
            return False, "migrations pending"
        return False, "database unavailable"
    if expected_migrations() - applied:
        return False, "migrations pending"
    return True, "ready"


def _probe(ready, status):
    response = JsonResponse({"status": status}, status=200 if ready else 503)
    response["Cache-Control"] = "no-store"
    return response


class HealthCheckMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path in PROBES and request.method in ("GET", "HEAD"):
            if "HTTP_X_FORWARDED_FOR" in request.META:
                request.get_host()  # DisallowedHost (400) for an unknown host
            if request.path == LIVENESS_PATH:
                return _probe(True, "ok")
            return _probe(*readiness())
        return self.get_response(request)

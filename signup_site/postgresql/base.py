"""
Django's PostgreSQL backend with every wait for the database bounded once
bound_waits() is called, as signup_site.wsgi does (a management command, such
as a long migration, is left alone): a locked table or a hung database costs a
visitor a bounded wait and the 503 page, never a worker killed by gunicorn.
"""

import os
import time

import psycopg
from django.db import OperationalError
from django.db.backends.postgresql import base
from psycopg import errors, waiting

# Long enough for what briefly locks a table (an index build, a migration's
# ALTER TABLE waiting behind a read), well inside gunicorn's 30 s timeout.
LOCK_TIMEOUT_MS = 10000
# Longer than the lock timeout, so that a lock wait is reported as one.
STATEMENT_TIMEOUT_MS = 12000
# The site's own clock, which a frozen server cannot stop; longer than the
# statement timeout, so that a live server always answers first.
ANSWER_TIMEOUT = 15.0
# A reused connection's SELECT 1, which waits for no lock: a frozen server
# is found here, at the start of a request.
HEALTH_CHECK_TIMEOUT = 1.0
# After the server stopped answering, every access fails at once for this
# long, so visitors get the 503 page instead of queueing behind waiting
# workers. A lock or statement timeout is an answer, and never opens it.
FAIL_FAST = 5.0
# Closes an idle connection whose peer is really gone.
KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}
# The server's side of the same: a session whose client's host is lost is
# closed within about 25 s, not the kernel's two hours, and its transaction's
# locks go with it (a mailer lost mid-send holds its mail's row). The user
# timeout covers what keepalives do not: data the lost client never acked.
SERVER_KEEPALIVES = (
    "-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 "
    "-c tcp_keepalives_count=3 -c tcp_user_timeout=25000"
)

_bounded = False
_gave_up_at = None


def bound_waits():
    """Bound every database wait of this process: it serves requests."""
    global _bounded
    _bounded = True


def _give_up():
    global _gave_up_at
    _gave_up_at = time.monotonic()


class BoundedConnection(psycopg.Connection):
    """A psycopg connection whose every wait for the server has a limit."""

    answer_timeout = ANSWER_TIMEOUT

    def wait(self, gen, interval=0.1, timeout=None):
        limit = self.answer_timeout if timeout is None else timeout
        try:
            # psycopg's own wait() is this call and a Ctrl-C handler, which a
            # gunicorn worker does not need: one call less per exchange.
            return waiting.wait(
                gen, self.pgconn.socket, interval=interval, timeout=limit
            )
        except errors._WaitTimeout:
            _give_up()
            self.close()
            # A statement the server already has may still complete if it wakes.
            raise errors.OperationalError(
                f"the database did not answer within {limit:g} s; "
                "the connection was closed"
            ) from None


class _Psycopg:
    """psycopg as Django's backend reaches it (self.Database), whose connect()
    makes a BoundedConnection while waits are bounded. Made as one from the
    start: a connection whose class is changed afterwards loses CPython's fast
    attribute lookups, which cost more than wait() itself."""

    def __getattr__(self, name):
        return getattr(psycopg, name)

    @staticmethod
    def connect(**params):
        connection_class = BoundedConnection if _bounded else psycopg.Connection
        return connection_class.connect(**params)


class DatabaseWrapper(base.DatabaseWrapper):
    Database = _Psycopg()

    def get_connection_params(self):
        params = {**KEEPALIVES, **super().get_connection_params()}
        # Options from PGOPTIONS and the URL come after the keepalives, so
        # they may change them, and before the bounds, which they may not.
        # (libpq reads PGOPTIONS only when no options are given, as here.)
        options = [
            SERVER_KEEPALIVES,
            os.environ.get("PGOPTIONS", ""),
            params.get("options", ""),
        ]
        if _bounded:
            options.append(
                f"-c lock_timeout={LOCK_TIMEOUT_MS} "
                f"-c statement_timeout={STATEMENT_TIMEOUT_MS}"
            )
        params["options"] = " ".join(option for option in options if option)
        return params

    def get_new_connection(self, conn_params):
        try:
            return super().get_new_connection(conn_params)
        except errors.ConnectionTimeout:
            if _bounded:
                _give_up()  # no answer within connect_timeout
            raise

    def fail_fast(self):
        if _bounded and _gave_up_at is not None:
            waited = time.monotonic() - _gave_up_at
            if waited < FAIL_FAST:
                raise OperationalError(
                    f"gave up waiting for the database {waited:.1f} s ago; "
                    f"not waiting again for {FAIL_FAST - waited:.1f} s"
                )

    def ensure_connection(self):
        if self.connection is None:
            self.fail_fast()  # instead of waiting out the connect timeout
        super().ensure_connection()

    def create_cursor(self, name=None):
        self.fail_fast()  # every query starts here
        return super().create_cursor(name)

    def is_usable(self):
        if not isinstance(self.connection, BoundedConnection):
            return super().is_usable()
        self.connection.answer_timeout = HEALTH_CHECK_TIMEOUT
        try:
            return super().is_usable()
        finally:
            self.connection.answer_timeout = ANSWER_TIMEOUT

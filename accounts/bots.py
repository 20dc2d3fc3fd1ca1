"""
Telling a script from a person on the sign-up form, on the server alone: a
trap field people never see and a token signed when the form is drawn, which
dates the form. docs/security.md says what this refuses and what it does not.
"""

import logging
import time
from collections import Counter

from django.conf import settings
from django.core import signing
from django.db import DatabaseError, connection
from django.utils import timezone

from accounts.models import RefusalTally
from signup_site.hardening import describe_client

TOKEN_FIELD = "signup_token"  # noqa: S105 (a field's name)
# The trap (accounts/trap.html): named like nothing a browser or password
# manager fills in. Static HTML, not a form field: the form stays the
# newcomer's, and a POST does not pay for cleaning a field never stored.
TRAP_FIELD = "leave_empty"
SALT = "accounts.bots.fill-time"
# A person may leave the page open overnight: WCAG 2.2.1 allows a time limit
# only above 20 hours. Older tokens get the form back, never a silent loss.
MAX_AGE_SECONDS = 24 * 60 * 60
# A flood of refusals costs each worker one UPDATE per this many seconds, not
# one per request (the count is the owner's, to the day, not a log).
FLUSH_SECONDS = 10

Reason = RefusalTally.Reason
# Only a script does these; it gets what a person gets, and nothing is stored.
HARD = frozenset({Reason.TRAP, Reason.NO_TOKEN, Reason.FORGED_TOKEN})

logger = logging.getLogger("accounts.bots")


def issue_token(*, now=None, key=None):
    """A token for a form drawn at NOW (time.time(), the default), signed with
    KEY (default: the site's SECRET_KEY): the time to the millisecond."""
    millis = round((time.time() if now is None else now) * 1000)
    return signing.Signer(key=key, salt=SALT).sign(signing.b62_encode(millis))


def token_age(token):
    """Seconds since TOKEN's form was drawn, or None if TOKEN was not signed
    here (or with a key in SECRET_KEY_FALLBACKS)."""
    try:
        millis = signing.b62_decode(signing.Signer(salt=SALT).unsign(token))
    except (signing.BadSignature, ValueError):
        return None
    return time.time() - millis / 1000


def refusal(form_data):
    """Why a sent form (FORM_DATA, the request's POST) looks automated: a
    Reason, or None."""
    if form_data.get(TRAP_FIELD):
        return Reason.TRAP
    token = form_data.get(TOKEN_FIELD)
    if not token:
        return Reason.NO_TOKEN
    age = token_age(token)
    if age is None:
        return Reason.FORGED_TOKEN
    if age > MAX_AGE_SECONDS:
        return Reason.OLD_TOKEN
    # A negative age (a clock behind the one that drew the form) is too fast.
    minimum = settings.SIGNUP_MIN_FILL_SECONDS
    if minimum and age < minimum:
        return Reason.TOO_FAST
    return None


def token_for_form_shown_again(form_data, reason):
    """The token of a sent form shown again (REASON: its refusal or None):
    the same render time if it had a valid one, since the person has been on
    the form since then; after a refusal for speed or age, one that is old
    enough already, so the person's next click is never too fast."""
    if reason in (Reason.TOO_FAST, Reason.OLD_TOKEN):
        return issue_token(now=time.time() - settings.SIGNUP_MIN_FILL_SECONDS)
    # A trap or a forged token gets its own token back, as a person's form
    # with errors does: the page must not tell a script what was noticed.
    return form_data.get(TOKEN_FIELD) or issue_token()


def record(request, reason):
    """Log one line for a refused sign-up and count it for the owner."""
    client, request_id = describe_client(request)
    logger.warning(
        "Sign-up refused as automated: %s (client %s, request id %s)",
        reason.label,
        client,
        request_id,
    )
    tally.add(timezone.localdate(), reason)


class Tally:
    """Refusals per day and reason, counted in the worker and added to the
    database's at most every FLUSH_SECONDS, and when the worker exits."""

    def __init__(self):
        self.pending = Counter()
        self.flushed_at = None

    def add(self, day, reason):
        self.pending[day, reason] += 1
        now = time.monotonic()
        if self.flushed_at is None or now - self.flushed_at >= FLUSH_SECONDS:
            self.flush()

    def flush(self):
        self.flushed_at = time.monotonic()
        if not self.pending:
            return
        pending, self.pending = self.pending, Counter()
        # Only the placeholders are pasted in; the values go as parameters.
        table = RefusalTally._meta.db_table
        rows = ", ".join(["(%s, %s, %s)"] * len(pending))
        # Rows are locked in the order given: one order for every worker, so
        # that workers flushing at once (they exit together) never deadlock.
        values = [
            value
            for (day, reason), n in sorted(pending.items())
            for value in (day, reason, n)
        ]
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    f"INSERT INTO {table} (day, reason, count) VALUES {rows}"  # noqa: S608
                    f" ON CONFLICT (day, reason) DO UPDATE"
                    f" SET count = {table}.count + EXCLUDED.count",
                    values,
                )
        except DatabaseError:
            # Kept for the next flush: a count is not worth failing a request.
            self.pending.update(pending)
            logger.warning("Refused sign-ups not counted yet: the database failed")


tally = Tally()

"""The mailer: sends the mail queued in OutgoingMail, one transaction per
mail, so that several mailers never send one mail twice and a mailer killed
mid-send sends again at most the mail it had in hand (docs/mail.md)."""

import contextlib
import logging
import smtplib
import threading
import time
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.mail import get_connection
from django.db import DatabaseError, connection, transaction
from django.db.models import DateTimeField, ExpressionWrapper
from django.db.models.functions import Coalesce, Now
from django.utils import timezone

from accounts.mail import confirmation_mail
from accounts.models import OutgoingMail, Signup

log = logging.getLogger(__name__)

# An idle mailer looks for new mail this often: the delay from sign-up to
# sent mail is at most about this.
POLL_SECONDS = 1.0
# A mail the server refused for now is tried again after 5 s, 10 s, 20 s, ...
# at most this far apart, until its confirmation link would have expired.
FIRST_RETRY = timedelta(seconds=5)
MAX_RETRY = timedelta(minutes=10)
# When the server cannot be reached at all, the mailer waits 1 s, 2 s, 4 s,
# ... at most this long before it tries again.
MAX_PAUSE_SECONDS = 15.0
PURGE_EVERY = timedelta(days=1)
# Sent and failed mail stays visible in the admin (and counts towards the
# limits on confirmation mails) this long.
KEEP_SENT = timedelta(days=30)

NEXT_DUE = """
SELECT m.id, m.kind, m.attempts, m.created_at, s.id, s.email, s.status
FROM accounts_outgoingmail AS m JOIN accounts_signup AS s ON s.id = m.signup_id
WHERE m.status = %s AND m.due_at <= now()
ORDER BY m.due_at, m.id
LIMIT 1
FOR UPDATE OF m SKIP LOCKED
"""


class Unreachable(Exception):
    """The mail server could not be reached or dropped the connection."""


def classify(exc):
    """(permanent, the server's answer or the error) for a failed send."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code, message = next(iter(exc.recipients.values()))
    elif isinstance(exc, smtplib.SMTPResponseException):
        code, message = exc.smtp_code, exc.smtp_error
    else:
        return False, str(exc) or type(exc).__name__
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    return 500 <= code < 600, f"{code} {message}"


def retry_delay(attempts):
    return min(FIRST_RETRY * 2 ** (attempts - 1), MAX_RETRY)


def purge():
    """Delete sign-ups still waiting for confirmation SIGNUP_PURGE_DAYS after
    their last confirmation mail, and sent or failed mail older than
    KEEP_SENT; return how many of each."""
    now = timezone.now()
    # From the last mail, not the sign-up: a mail sent again holds a new link
    # and says how long the address is kept.
    pending = (
        Signup.objects.filter(status=Signup.Status.PENDING)
        .alias(last_asked=Coalesce("last_mailed_at", "signed_up_at"))
        .filter(last_asked__lt=now - timedelta(days=settings.SIGNUP_PURGE_DAYS))
    )
    old_mail = OutgoingMail.objects.exclude(status=OutgoingMail.Status.QUEUED).filter(
        created_at__lt=now - KEEP_SENT
    )
    with transaction.atomic():
        # Their queued mail goes with the sign-ups (on_delete=CASCADE).
        signups = pending.delete()[1].get(Signup._meta.label, 0)
        mails = old_mail.delete()[0]
    return signups, mails


class Mailer:
    """Sends due mail until STOP is set; touches HEARTBEAT (a path or None)
    at least every few seconds while it works or waits."""

    def __init__(self, stop=None, heartbeat=None):
        self.stop = stop or threading.Event()
        self.heartbeat = Path(heartbeat) if heartbeat else None
        self.smtp = None
        self.pause_seconds = 0.0
        self.next_purge = 0.0
        self.sent = 0

    def run(self, once=False):
        """Send mail as it becomes due; with ONCE, stop when none is due,
        and raise Unreachable rather than wait for the server."""
        try:
            while not self.stop.is_set():
                self.beat()
                try:
                    if time.monotonic() >= self.next_purge:
                        self.purge()
                    if not self.send_next():
                        if once:
                            return
                        self.wait(POLL_SECONDS)
                except Unreachable as exc:
                    if once:
                        raise
                    self.back_off(f"mail server unreachable: {exc}")
                except DatabaseError as exc:
                    # Not up yet, restarted, or not migrated yet (the site's
                    # `bootstrap` migrates; the mailer never does): a new
                    # connection next time.
                    connection.close()
                    self.back_off(f"database unavailable: {exc}".strip())
                else:
                    self.pause_seconds = 0.0
        finally:
            self.close_smtp()
            log.info("Mailer stopped after sending %d mail.", self.sent)

    def send_next(self):
        """Send the mail due first, if any; return whether there was one."""
        unreachable = None
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(NEXT_DUE, [OutgoingMail.Status.QUEUED])
                row = cursor.fetchone()
            if row is None:
                return False
            mail_id, kind, attempts, created_at, signup_id, address, status = row
            if kind == OutgoingMail.Kind.CONFIRM and status == Signup.Status.CONFIRMED:
                # Confirmed while this waited (a retry, or queued again by
                # hand): asking again would only confuse.
                OutgoingMail.objects.filter(pk=mail_id).delete()
                log.info("Dropped mail %d (%s): already confirmed.", mail_id, kind)
                return True
            attempts += 1
            try:
                message = self.compose(kind, mail_id, signup_id, address)
            except Exception as exc:  # a bug: it must not stop the queue
                log.exception("Mail %d (%s) could not be composed.", mail_id, kind)
                OutgoingMail.objects.filter(pk=mail_id).update(
                    status=OutgoingMail.Status.FAILED,
                    attempts=attempts,
                    last_error=f"not composed: {exc!r}"[:1000],
                )
                return True
            try:
                self.deliver(message)
            except Unreachable as exc:
                # Not this mail's fault: it stays first in line, and the
                # mailer waits (raised below, once this is committed).
                OutgoingMail.objects.filter(pk=mail_id).update(
                    attempts=attempts, last_error=f"unreachable: {exc}"[:1000]
                )
                unreachable = exc
            except smtplib.SMTPException as exc:
                self.refused(mail_id, kind, attempts, created_at, exc)
            else:
                OutgoingMail.objects.filter(pk=mail_id).update(
                    status=OutgoingMail.Status.SENT,
                    attempts=attempts,
                    sent_at=Now(),
                    last_error="",
                )
                self.sent += 1
                log.info("Sent mail %d (%s, attempt %d).", mail_id, kind, attempts)
        if unreachable is not None:
            raise unreachable
        return True

    def compose(self, kind, mail_id, signup_id, address):
        if kind == OutgoingMail.Kind.CONFIRM:
            return confirmation_mail(mail_id, signup_id, address)
        raise ValueError(f"no mail of kind {kind!r}")

    def refused(self, mail_id, kind, attempts, created_at, exc):
        permanent, answer = classify(exc)
        expired = timezone.now() - created_at > timedelta(
            days=settings.SIGNUP_CONFIRM_DAYS
        )
        if permanent or expired:
            OutgoingMail.objects.filter(pk=mail_id).update(
                status=OutgoingMail.Status.FAILED,
                attempts=attempts,
                last_error=answer[:1000],
            )
            log.warning(
                "Mail %d (%s) failed for good after %d attempt%s: %s",
                *(mail_id, kind, attempts, "s" * (attempts != 1), answer),
            )
        else:
            delay = retry_delay(attempts)
            OutgoingMail.objects.filter(pk=mail_id).update(
                attempts=attempts,
                due_at=ExpressionWrapper(Now() + delay, DateTimeField()),
                last_error=answer[:1000],
            )
            log.warning(
                "Mail %d (%s) deferred %d s after attempt %d: %s",
                *(mail_id, kind, delay.total_seconds(), attempts, answer),
            )
        # The session may be in any state after a refusal: start afresh.
        self.close_smtp()

    def deliver(self, message):
        """Send MESSAGE over the open connection, opening one if needed."""
        try:
            if self.smtp is None:
                self.smtp = get_connection(fail_silently=False)
                self.smtp.open()
            message.connection = self.smtp
            message.send()
        except (smtplib.SMTPRecipientsRefused, smtplib.SMTPDataError) as exc:
            # The server answered for this mail; a 421 means it is going away.
            if getattr(exc, "smtp_code", None) == 421:
                self.close_smtp()
                raise Unreachable(classify(exc)[1]) from exc
            raise
        except (
            smtplib.SMTPResponseException,
            smtplib.SMTPServerDisconnected,
            smtplib.SMTPNotSupportedError,
            OSError,
        ) as exc:
            # Refused at connection, greeting, TLS or login: every mail would
            # be, so the mailer waits instead of burning through the queue.
            self.close_smtp()
            answer = classify(exc)[1]
            raise Unreachable(answer) from exc

    def close_smtp(self):
        if self.smtp is not None:
            smtp, self.smtp = self.smtp, None
            with contextlib.suppress(smtplib.SMTPException, OSError):
                smtp.close()

    def back_off(self, reason):
        self.pause_seconds = min(max(self.pause_seconds * 2, 1.0), MAX_PAUSE_SECONDS)
        log.warning("%s; trying again in %g s.", reason, self.pause_seconds)
        self.wait(self.pause_seconds)

    def wait(self, seconds):
        """Sleep SECONDS, or less if told to stop, beating meanwhile."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.stop.wait(min(left, 1.0)):
                return
            self.beat()

    def beat(self):
        if self.heartbeat is not None:
            self.heartbeat.touch()

    def purge(self):
        signups, mails = purge()
        if signups or mails:
            log.info(
                "Purged %d unconfirmed sign-up%s and %d old mail record%s.",
                *(signups, "s" * (signups != 1), mails, "s" * (mails != 1)),
            )
        self.next_purge = time.monotonic() + PURGE_EVERY.total_seconds()

"""Send the mail the site queues: the `mailer` service runs this."""

import logging
import os
import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from accounts.outbox import Mailer, Unreachable

log = logging.getLogger("accounts.outbox")
DEFAULT_HEARTBEAT = "/tmp/mailer-heartbeat"  # noqa: S108 (the container's own /tmp)


class Command(BaseCommand):
    help = (
        "Send queued mail until stopped (SIGTERM or SIGINT finish the mail in "
        "hand first). Several may run at once. See docs/mail.md."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--once",
            action="store_true",
            help="Send what is due now, then exit.",
        )

    def handle(self, *args, once=False, **options):
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        heartbeat = os.environ.get("MAILER_HEARTBEAT_FILE", DEFAULT_HEARTBEAT)
        mailer = Mailer(stop=stop, heartbeat=heartbeat or None)
        if not settings.EMAIL_CONFIGURED:
            log.warning(
                "No mail is configured (EMAIL_URL): nothing will be sent. "
                "Sign-ups are stored as without the mailer."
            )
            if once:
                return
            # Idle, not exiting: an orchestrator would restart it in a loop.
            while not stop.is_set():
                mailer.wait(60)
            return
        log.info("Mailer sending through %s.", settings.EMAIL_BACKEND)
        try:
            mailer.run(once=once)
        except Unreachable as exc:
            # Only with --once: a cron job should fail, not wait for hours.
            raise CommandError(f"The mail server cannot be reached: {exc}") from exc

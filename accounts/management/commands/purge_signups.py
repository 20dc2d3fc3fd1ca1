"""Delete what the site no longer needs to keep (the mailer does this daily)."""

from django.conf import settings
from django.core.management.base import BaseCommand

from accounts.outbox import KEEP_SENT, purge


class Command(BaseCommand):
    help = (
        "Delete sign-ups not confirmed within SIGNUP_PURGE_DAYS "
        f"({settings.SIGNUP_PURGE_DAYS}) days of their last confirmation mail, "
        f"and records of mail sent more than {KEEP_SENT.days} days ago."
    )

    def handle(self, *args, **options):
        signups, mails = purge()
        self.stdout.write(
            f"Deleted {signups} unconfirmed sign-up{'s' * (signups != 1)} "
            f"and {mails} old mail record{'s' * (mails != 1)}."
        )

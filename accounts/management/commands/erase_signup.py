"""Erase one person's sign-up, as its unsubscribe link does."""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email

from accounts.models import Signup


class Command(BaseCommand):
    help = (
        "Delete the sign-up of an email address (in any case) and any mail "
        "still queued for it."
    )

    def add_arguments(self, parser):
        parser.add_argument("address", help="The email address to erase.")

    def handle(self, *args, address, **options):
        address = address.strip()
        try:
            validate_email(address)
        except ValidationError as exc:
            raise CommandError(f"{address!r} is not an email address.") from exc
        deleted = Signup.objects.erase(address)
        if not deleted:
            raise CommandError(f"No sign-up has the address {address}.")
        self.stdout.write(f"Erased the sign-up of {address} and its queued mail.")

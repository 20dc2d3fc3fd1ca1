from datetime import datetime, time, timedelta
from functools import cache

from django.db import connections, models, router
from django.db.models.functions import Lower, Now
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

EMAIL_UNIQUE_CONSTRAINT = "accounts_signup_email_ci_unique"


def start_of_day(day):
    """The moment DAY begins in the current time zone."""
    return timezone.make_aware(datetime.combine(day, time.min))


@cache
def python_defaults(model):
    """MODEL's fields whose default Django keeps in Python, none in the
    database: an INSERT that leaves them out must send it."""
    return [
        field
        for field in model._meta.concrete_fields
        if field.has_default() and not field.primary_key
    ]


class SignupQuerySet(models.QuerySet):
    def on_days(self, first=None, last=None):
        """Sign-ups from day FIRST to day LAST, both included and either open;
        a range on the indexed column itself, not a condition on its date."""
        signups = self
        if first:
            signups = signups.filter(signed_up_at__gte=start_of_day(first))
        if last:
            after = start_of_day(last + timedelta(days=1))
            signups = signups.filter(signed_up_at__lt=after)
        return signups

    def register(self, fields):
        """Store a sign-up of FIELDS (model field name -> value) unless its
        email (in any case) is taken, silently, so no caller can tell who
        signed up. One INSERT ... ON CONFLICT DO NOTHING in autocommit: one
        round trip, and PostgreSQL settles a race between two identical ones."""
        connection = connections[self._db or router.db_for_write(self.model)]
        quote = connection.ops.quote_name
        defaults = {
            field.name: field.get_default() for field in python_defaults(self.model)
        }
        fields = {**defaults, **fields}
        model_fields = [self.model._meta.get_field(name) for name in fields]
        columns = ", ".join(quote(field.column) for field in model_fields)
        values = [
            field.get_db_prep_save(value, connection)
            for field, value in zip(model_fields, fields.values(), strict=True)
        ]
        placeholders = ", ".join(["%s"] * len(values))
        # Identifiers come from the model, values are parameters.
        sql = (
            f"INSERT INTO {quote(self.model._meta.db_table)} ({columns}) "  # noqa: S608
            f"VALUES ({placeholders}) ON CONFLICT DO NOTHING"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, values)


class Signup(models.Model):
    name = models.CharField(_("name"), max_length=256)
    email = models.EmailField(_("email address"), max_length=254)
    # Set by the database, so every writer (the site, the admin, a bulk load)
    # uses the same clock.
    signed_up_at = models.DateTimeField(
        _("signed up at"), db_default=Now(), editable=False, db_index=True
    )

    objects = SignupQuerySet.as_manager()

    class Meta:
        verbose_name = _("sign-up")
        verbose_name_plural = _("sign-ups")
        ordering = ["-signed_up_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                Lower("email"),
                name=EMAIL_UNIQUE_CONSTRAINT,
                violation_error_message=_("This email address has already signed up."),
            ),
        ]
        # The admin's search has trigram indexes over UPPER(name) and
        # UPPER(email), made by migration 0002 in SQL.

    def __str__(self):
        return f"{self.name} <{self.email}>"


class RefusalTally(models.Model):
    """How many sign-ups were refused as automated on a day, for one reason."""

    class Reason(models.TextChoices):
        TRAP = "trap", _("trap field filled in")
        NO_TOKEN = "no_token", _("no form token")
        FORGED_TOKEN = "forged_token", _("forged form token")
        TOO_FAST = "too_fast", _("sent too fast")
        OLD_TOKEN = "old_token", _("form token too old")

    day = models.DateField(_("day"))
    reason = models.CharField(_("reason"), max_length=20, choices=Reason)
    count = models.PositiveBigIntegerField(_("count"))

    class Meta:
        verbose_name = _("refused sign-ups")
        verbose_name_plural = _("refused sign-ups")
        ordering = ["-day", "reason"]
        constraints = [
            models.UniqueConstraint(
                fields=["day", "reason"], name="accounts_refusaltally_day_reason"
            ),
        ]

    def __str__(self):
        return f"{self.day} {self.reason}: {self.count}"

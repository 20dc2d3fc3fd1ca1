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


def in_status(status, field, name):
    """An index over FIELD of the rows in STATUS only: a few among many."""
    return models.Index(fields=[field], name=name, condition=models.Q(status=status))


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

    def confirm(self, signup_id):
        """Mark sign-up SIGNUP_ID confirmed, now unless it was already;
        return whether it exists."""
        pending = self.filter(pk=signup_id).exclude(status=Signup.Status.CONFIRMED)
        updated = pending.update(status=Signup.Status.CONFIRMED, confirmed_at=Now())
        return bool(updated) or self.filter(pk=signup_id).exists()

    def erase(self, address):
        """Delete the sign-up of ADDRESS (in any case) and its queued mail;
        return whether there was one."""
        signups = self.alias(email_lower=Lower("email"))
        return signups.filter(email_lower=address.lower()).delete()[0] > 0

    def register(self, fields, *, confirm=False):
        """Store a sign-up of FIELDS (model field name -> value) unless its
        email (in any case) is taken, silently, so no caller can tell who
        signed up. One INSERT ... ON CONFLICT DO NOTHING in autocommit: one
        round trip, and PostgreSQL settles a race between two identical ones.

        With CONFIRM the sign-up waits for its address to be confirmed, and
        the same statement queues the mail that asks for it; an address
        still waiting gets it again as often as the limits allow."""
        connection = connections[self._db or router.db_for_write(self.model)]
        quote = connection.ops.quote_name
        defaults = {
            field.name: field.get_default() for field in python_defaults(self.model)
        }
        fields = {**defaults, **fields}
        if confirm:
            fields["status"] = Signup.Status.PENDING
        model_fields = [self.model._meta.get_field(name) for name in fields]
        columns = ", ".join(quote(field.column) for field in model_fields)
        values = [
            field.get_db_prep_save(value, connection)
            for field, value in zip(model_fields, fields.values(), strict=True)
        ]
        placeholders = ", ".join(["%s"] * len(values))
        table = quote(self.model._meta.db_table)
        # Identifiers come from the models, values are parameters.
        if not confirm:
            sql = (
                f"INSERT INTO {table} ({columns}) "  # noqa: S608
                f"VALUES ({placeholders}) ON CONFLICT DO NOTHING"
            )
            with connection.cursor() as cursor:
                cursor.execute(sql, values)
            return
        mail = quote(OutgoingMail._meta.db_table)
        kind = OutgoingMail.Kind.CONFIRM
        with connection.cursor() as cursor:
            cursor.execute(
                CONFIRMING_INSERT.format(
                    signup=table, columns=columns, placeholders=placeholders, mail=mail
                ),
                [*values, kind],
            )
            if cursor.rowcount:
                return
            # The address was there already: a new mail only if it is still
            # waiting and within the limits. A second statement, so that the
            # usual sign-up, a new address, is planned without this part.
            cursor.execute(
                MAILING_AGAIN.format(signup=table, mail=mail),
                [
                    fields["email"],
                    Signup.Status.PENDING,
                    MAIL_INTERVAL.total_seconds(),
                    kind,
                    MAILS_PER_DAY,
                    kind,
                ],
            )


# How often the form can have a confirmation mail sent to one address: the
# form must not be a way to flood a stranger's mailbox.
MAIL_INTERVAL = timedelta(minutes=3)
MAILS_PER_DAY = 5

# A new sign-up and its confirmation mail, in one statement; nothing if the
# address is taken.
CONFIRMING_INSERT = """
WITH new AS (
    INSERT INTO {signup} ({columns}, last_mailed_at)
    VALUES ({placeholders}, now())
    ON CONFLICT DO NOTHING
    RETURNING id
)
INSERT INTO {mail} (signup_id, kind) SELECT id, %s FROM new
"""

# The confirmation mail again, for an address still waiting, within the
# limits. The UPDATE locks the waiting row, so two sign-ups at once cannot
# both pass them.
MAILING_AGAIN = """
WITH again AS (
    UPDATE {signup} AS s SET last_mailed_at = now()
    WHERE lower(s.email) = lower(%s) AND s.status = %s
    AND s.last_mailed_at < now() - make_interval(secs => %s)
    AND (
        SELECT count(*) FROM {mail} AS m
        WHERE m.signup_id = s.id AND m.kind = %s
        AND m.created_at > now() - interval '1 day'
    ) < %s
    RETURNING s.id
)
INSERT INTO {mail} (signup_id, kind) SELECT id, %s FROM again
"""


class Signup(models.Model):
    class Status(models.TextChoices):
        # Stored while double opt-in was off: the address was never checked.
        UNCONFIRMED = "unconfirmed", _("not asked to confirm")
        PENDING = "pending", _("waiting for confirmation")
        CONFIRMED = "confirmed", _("confirmed")

    name = models.CharField(_("name"), max_length=256)
    email = models.EmailField(_("email address"), max_length=254)
    # Set by the database, so every writer (the site, the admin, a bulk load)
    # uses the same clock.
    signed_up_at = models.DateTimeField(
        _("signed up at"), db_default=Now(), editable=False, db_index=True
    )
    status = models.CharField(
        _("status"),
        max_length=12,
        choices=Status,
        db_default=Status.UNCONFIRMED,
        editable=False,
    )
    confirmed_at = models.DateTimeField(
        _("confirmed at"), null=True, blank=True, editable=False
    )
    # Which wording of the form the person saw (accounts.consent); the
    # ConsentWording table holds each version's text.
    consent_version = models.CharField(
        _("consent version"), max_length=16, db_default="", editable=False
    )
    # When a confirmation mail was last queued for the address: the limit on
    # how often the form can mail one address starts here.
    last_mailed_at = models.DateTimeField(null=True, editable=False)

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
        # The few sign-ups waiting for confirmation among many: counted on
        # every admin list page, listed by its filter, and purged. (The admin's
        # search has trigram indexes over UPPER(name) and UPPER(email), made
        # by migration 0002 in SQL.)
        indexes = [in_status("pending", "signed_up_at", "accounts_signup_pending")]

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


class ConsentWording(models.Model):
    """A version of what the form told people about their consent: what a
    sign-up's consent_version points to."""

    version = models.CharField(_("version"), max_length=16, primary_key=True)
    text = models.TextField(_("consent sentence"), blank=True)
    privacy_url = models.CharField(_("privacy page"), max_length=2000, blank=True)
    checkbox = models.BooleanField(_("asked with a checkbox"))
    first_used_at = models.DateTimeField(_("first used at"), db_default=Now())

    class Meta:
        verbose_name = _("consent wording")
        verbose_name_plural = _("consent wordings")
        ordering = ["-first_used_at"]

    def __str__(self):
        return self.version


class OutgoingMail(models.Model):
    """A mail the site is to send, queued in the same statement as what
    caused it and sent by the mailer (accounts.outbox)."""

    class Kind(models.TextChoices):
        CONFIRM = "confirm", _("confirmation request")

    class Status(models.TextChoices):
        QUEUED = "queued", _("queued")
        SENT = "sent", _("sent")
        FAILED = "failed", _("failed")

    # Erasing a sign-up drops the mail not yet sent to it.
    signup = models.ForeignKey(
        Signup, on_delete=models.CASCADE, verbose_name=_("sign-up")
    )
    kind = models.CharField(_("kind"), max_length=12, choices=Kind)
    status = models.CharField(
        _("status"), max_length=8, choices=Status, db_default=Status.QUEUED
    )
    created_at = models.DateTimeField(_("queued at"), db_default=Now())
    # Not sent before this: a temporary failure moves it later.
    due_at = models.DateTimeField(_("due at"), db_default=Now())
    attempts = models.PositiveIntegerField(_("attempts"), db_default=0)
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)
    last_error = models.TextField(_("last error"), blank=True, db_default="")

    class Meta:
        verbose_name = _("outgoing mail")
        verbose_name_plural = _("outgoing mail")
        ordering = ["-created_at", "-id"]
        # The mailer's queue: only what is still to be sent.
        indexes = [in_status("queued", "due_at", "accounts_outgoingmail_queue")]

    def __str__(self):
        return f"{self.get_kind_display()} #{self.pk}"

from django.db import models, router, transaction
from django.db.models.functions import Lower, Now
from django.utils.translation import gettext_lazy as _

EMAIL_UNIQUE_CONSTRAINT = "accounts_signup_email_ci_unique"


class SignupQuerySet(models.QuerySet):
    def register(self, *, name, email):
        """
        Store a sign-up unless one with this email (in any case) exists.

        INSERT ... ON CONFLICT DO NOTHING (what bulk_create emits with
        ignore_conflicts) settles the race between two simultaneous identical
        sign-ups inside PostgreSQL: one row is written, neither request
        fails, and no error is logged by the server. The outcome is the same
        for a new and an existing address, so callers cannot reveal who
        signed up.

        The INSERT runs in a transaction whose COMMIT is sent only once the
        INSERT has returned. A database that freezes mid-INSERT makes the
        site give up and close the connection (signup_site.postgresql); the
        server, when it wakes, runs the INSERT still in its socket buffer but
        then finds its client gone and rolls back. In autocommit that INSERT
        would be stored for a visitor who was shown an error.
        """
        alias = self._db or router.db_for_write(self.model)
        with transaction.atomic(using=alias, savepoint=False):
            self.using(alias).bulk_create(
                [self.model(name=name, email=email)], ignore_conflicts=True
            )


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
        # UPPER(email), made by migration 0002 in SQL (they need
        # django.contrib.postgres's OpClass, which needs that app installed).

    def __str__(self):
        return f"{self.name} <{self.email}>"

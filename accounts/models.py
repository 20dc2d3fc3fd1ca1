from django.db import connections, models, router
from django.db.models.functions import Lower, Now
from django.utils.translation import gettext_lazy as _

EMAIL_UNIQUE_CONSTRAINT = "accounts_signup_email_ci_unique"


class SignupQuerySet(models.QuerySet):
    def register(self, *, name, email):
        """
        Store a sign-up unless one with this email (in any case) exists.

        INSERT ... ON CONFLICT DO NOTHING settles the race between two
        simultaneous identical sign-ups inside PostgreSQL: one row is written,
        neither request fails, and no error is logged by the server. The
        outcome is the same for a new and an existing address, so callers
        cannot reveal who signed up.

        It is one statement, and so one round trip in autocommit mode:
        bulk_create() would wrap the same INSERT in BEGIN and COMMIT, which
        a single statement does not need (it is atomic on its own).
        """
        alias = self._db or router.db_for_write(self.model)
        connection = connections[alias]
        quote = connection.ops.quote_name
        meta = self.model._meta
        columns = ", ".join(
            quote(meta.get_field(field).column) for field in ("name", "email")
        )
        # Identifiers come from the model, values are parameters.
        sql = (
            f"INSERT INTO {quote(meta.db_table)} ({columns}) "  # noqa: S608
            "VALUES (%s, %s) ON CONFLICT DO NOTHING"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [name, email])


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

"""
An index of the sign-ups waiting for confirmation, built concurrently: a
plain build would hold every sign-up up while it reads the table
(docs/operations.md#migrations-under-load).
"""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("accounts", "0004_mail_and_consent"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="signup",
            index=models.Index(
                condition=models.Q(("status", "pending")),
                fields=["signed_up_at"],
                name="accounts_signup_pending",
            ),
        ),
    ]

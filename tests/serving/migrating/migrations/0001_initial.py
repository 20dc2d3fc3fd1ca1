from django.db import migrations


class Migration(migrations.Migration):
    """What adding a column to the sign-ups does: ALTER TABLE takes an ACCESS
    EXCLUSIVE lock, which queues behind any open read of the table."""

    dependencies = [("accounts", "0002_admin_search_indexes")]

    operations = [
        migrations.RunSQL(
            "ALTER TABLE accounts_signup ADD COLUMN added_under_load integer",
            reverse_sql="ALTER TABLE accounts_signup DROP COLUMN added_under_load",
        )
    ]

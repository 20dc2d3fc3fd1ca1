"""
Trigram indexes for the admin's search.

The admin searches name and email with icontains, which Django runs on
PostgreSQL as ``UPPER(field::text) LIKE UPPER('%term%')``. A GIN index with
pg_trgm's operator class over exactly that expression answers such a LIKE
(for terms of three characters or more) without reading every row. The
indexes are written in SQL: declaring them in Meta.indexes would need
django.contrib.postgres in INSTALLED_APPS for its OpClass.
"""

from django.contrib.postgres.operations import TrigramExtension
from django.db import migrations

INDEXES = {
    "accounts_signup_name_trgm": "name",
    "accounts_signup_email_trgm": "email",
}


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
    ]

    operations = [
        # A trusted extension since PostgreSQL 13: the database's owner may
        # create it; the official image's user is a superuser anyway.
        TrigramExtension(),
        *(
            migrations.RunSQL(
                sql=f"CREATE INDEX {index} ON accounts_signup"
                f" USING gin ((UPPER({column}::text)) gin_trgm_ops)",
                reverse_sql=f"DROP INDEX {index}",
            )
            for index, column in INDEXES.items()
        ),
    ]

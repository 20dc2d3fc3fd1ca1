"""CSV export of sign-ups, oldest first, streamed in little memory: shared by
the admin action and `export_signups`."""

import csv
from itertools import islice

from django.db.models import CharField, Func

HEADER = (
    "name",
    "email",
    "signed_up_at",
    "status",
    "confirmed_at",
    "consent_version",
)
# A spreadsheet treats a cell starting with one of these as a formula
# (OWASP "CSV injection"); a leading apostrophe makes it plain text.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
# Rows per piece of output: a piece per row costs a system call per sign-up.
LINES_PER_CHUNK = 1000


class IsoFormatUTC(Func):
    """A timestamp as isoformat() writes it in UTC, made by PostgreSQL: Django
    reads timestamps with psycopg's pure-Python loader, three times the CPU."""

    output_field = CharField()
    template = (
        "to_char(%(expressions)s AT TIME ZONE 'UTC', "
        "'YYYY-MM-DD\"T\"HH24:MI:SS')"
        " || CASE WHEN to_char(%(expressions)s, 'US') = '000000' THEN ''"
        " ELSE to_char(%(expressions)s, '.US') END || '+00:00'"
    )


def neutralise(value):
    text = str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


class _Echo:
    """A file-like object whose write() hands back what it was given."""

    def write(self, value):
        return value


def csv_batches(queryset, size=LINES_PER_CHUNK):
    """Yield (CSV text, rows in it) for QUERYSET: the header, then SIZE rows at
    a time."""
    writer = csv.writer(_Echo())
    yield writer.writerow(HEADER), 0
    rows = (
        queryset.order_by("signed_up_at", "id")
        .annotate(
            signed_up_at_text=IsoFormatUTC("signed_up_at"),
            # NULL (never confirmed) stays NULL, an empty cell.
            confirmed_at_text=IsoFormatUTC("confirmed_at"),
        )
        .values_list(
            "name",
            "email",
            "signed_up_at_text",
            "status",
            "confirmed_at_text",
            "consent_version",
        )
        .iterator(chunk_size=2000)
    )
    while batch := list(islice(rows, size)):
        # Only name and email are typed by visitors; the rest is the site's.
        lines = (
            writer.writerow((neutralise(n), neutralise(e), at, st, conf, version))
            for n, e, at, st, conf, version in batch
        )
        yield "".join(lines), len(batch)


def csv_chunks(queryset, size=LINES_PER_CHUNK):
    """The CSV text alone, for a streamed response."""
    return (text for text, _rows in csv_batches(queryset, size))

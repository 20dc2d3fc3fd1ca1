"""
CSV export of sign-ups, streamed so that a million rows cost a few kilobytes
of memory, shared by the admin action and any command that exports.
"""

import csv

from django.db.models import CharField, Func

HEADER = ("name", "email", "signed_up_at")
# A spreadsheet treats a cell starting with one of these as a formula
# (OWASP "CSV injection"); a leading apostrophe makes it plain text.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
CHUNK_SIZE = 2000
# Lines per piece of a streamed response: one piece per line would cost a
# system call (and a chunk header) per sign-up.
LINES_PER_CHUNK = 1000


class IsoFormatUTC(Func):
    """A timestamp with time zone as Python's isoformat() writes it in UTC
    (2026-05-12T09:30:00.250000+00:00, no fraction when it is zero), formatted
    by PostgreSQL instead of making a datetime of each row and text of that.
    Django reads timestamps in UTC whatever TIME_ZONE says (USE_TZ), so the
    text is the same."""

    output_field = CharField()
    template = (
        "to_char(%(expressions)s AT TIME ZONE 'UTC', "
        "'YYYY-MM-DD\"T\"HH24:MI:SS')"
        " || CASE WHEN to_char(%(expressions)s, 'US') = '000000' THEN ''"
        " ELSE to_char(%(expressions)s, '.US') END || '+00:00'"
    )


def neutralise(value):
    text = str(value)
    if text.startswith(FORMULA_PREFIXES):
        return "'" + text
    return text


class _Echo:
    """A file-like object whose write() hands back what it was given."""

    def write(self, value):
        return value


def csv_rows(queryset):
    """Yield the CSV text of QUERYSET, a line at a time, header first."""
    writer = csv.writer(_Echo())
    yield writer.writerow(HEADER)
    rows = (
        queryset.order_by("signed_up_at", "id")
        .annotate(signed_up_at_text=IsoFormatUTC("signed_up_at"))
        .values_list("name", "email", "signed_up_at_text")
    )
    for name, email, signed_up_at in rows.iterator(chunk_size=CHUNK_SIZE):
        yield writer.writerow((neutralise(name), neutralise(email), signed_up_at))


def csv_chunks(queryset, lines=LINES_PER_CHUNK):
    """csv_rows(QUERYSET) joined LINES lines at a time, for a streamed response."""
    buffer = []
    for line in csv_rows(queryset):
        buffer.append(line)
        if len(buffer) >= lines:
            yield "".join(buffer)
            buffer.clear()
    if buffer:
        yield "".join(buffer)

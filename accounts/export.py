"""
CSV export of sign-ups, streamed so that a million rows cost a few kilobytes
of memory, shared by the admin action and any command that exports.
"""

import csv

HEADER = ("name", "email", "signed_up_at")
# A spreadsheet treats a cell starting with one of these as a formula
# (OWASP "CSV injection"); a leading apostrophe makes it plain text.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
CHUNK_SIZE = 2000


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
    rows = queryset.order_by("signed_up_at", "id").values_list(*HEADER)
    for name, email, signed_up_at in rows.iterator(chunk_size=CHUNK_SIZE):
        yield writer.writerow(
            (neutralise(name), neutralise(email), signed_up_at.isoformat())
        )

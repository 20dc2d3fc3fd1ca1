"""Write sign-ups as CSV: all of them or a date range, to stdout or a file."""

import os
import shutil
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accounts.export import csv_rows
from accounts.models import Signup

# Lines handed to one write() call, and how often the progress bar may be
# redrawn: a million rows cost a few thousand writes and a few hundred redraws.
LINES_PER_WRITE = 1000
REDRAW_SECONDS = 0.1


def iso_date(text):
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not a date in the form YYYY-MM-DD: {text!r}") from None


iso_date.__name__ = "date"  # argparse's message: "invalid date value: ..."


class ProgressBar:
    """One line on a terminal, redrawn in place:
    Exporting sign-ups [#########.........]  48%  480,000 of 1,000,000  2.1 s
    """

    def __init__(self, stream, total, label="Exporting sign-ups"):
        self.stream = stream
        self.total = total
        self.label = label
        self.started = time.monotonic()
        self.drawn_at = 0.0
        # The bar keeps its width while the numbers after it grow.
        self.columns = shutil.get_terminal_size((80, 24)).columns
        widest_tail = len(self.tail(total, 1.0, 9999.9))
        self.width = max(10, min(40, self.columns - len(label) - widest_tail - 4))

    def tail(self, done, fraction, seconds):
        return (
            # Rounded down: 100% only once every row is written.
            f" {int(fraction * 100):3d}%  {done:,} of {max(self.total, done):,}"
            f"  {seconds:.1f} s"
        )

    def update(self, done, *, force=False):
        now = time.monotonic()
        if not force and now - self.drawn_at < REDRAW_SECONDS:
            return
        self.drawn_at = now
        total = max(self.total, done)
        fraction = done / total if total else 1.0
        filled = int(self.width * fraction)
        bar = "#" * filled + "." * (self.width - filled)
        line = f"{self.label} [{bar}]{self.tail(done, fraction, now - self.started)}"
        self.stream.write("\r" + line[: self.columns - 1])
        self.stream.flush()

    def finish(self, done):
        self.update(done, force=True)
        self.stream.write("\n")
        self.stream.flush()


class Command(BaseCommand):
    help = (
        "Write sign-ups as CSV (name, email, signed_up_at; oldest first), all of "
        "them or those from --since to --until, to standard output or to "
        "--output FILE. Rows are streamed from the database, so memory use stays "
        "small for any number of rows. Cells that a spreadsheet would run as a "
        "formula are prefixed with an apostrophe, as in the admin's export. On a "
        "terminal a progress bar is drawn on standard error; in a pipe or a "
        "script there is none. A file is written under a temporary name and "
        "renamed when complete, readable by its owner only."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "-o",
            "--output",
            default="-",
            metavar="FILE",
            help="Write to FILE instead of standard output ('-').",
        )
        parser.add_argument(
            "--since",
            type=iso_date,
            metavar="YYYY-MM-DD",
            help="Only sign-ups on or after this day (in the site's time zone).",
        )
        parser.add_argument(
            "--until",
            type=iso_date,
            metavar="YYYY-MM-DD",
            help="Only sign-ups on or before this day (in the site's time zone).",
        )
        progress = parser.add_mutually_exclusive_group()
        progress.add_argument(
            "--progress",
            action="store_true",
            default=None,
            help="Draw the progress bar even when standard error is not a terminal.",
        )
        progress.add_argument(
            "--no-progress",
            action="store_false",
            dest="progress",
            help="Never draw the progress bar.",
        )

    def handle(self, *args, **options):
        since, until = options["since"], options["until"]
        if since and until and since > until:
            raise CommandError(f"--since {since} is after --until {until}.")
        queryset = self.select(since, until)
        to_stdout = options["output"] == "-"
        # CSV on a terminal: the bar and the summary would land in between
        # (and `docker compose exec` without -T merges the two streams).
        csv_on_terminal = to_stdout and self.stdout.isatty()
        progress = options["progress"]
        if progress is None:
            progress = self.stderr.isatty() and not csv_on_terminal
        started = time.monotonic()

        if to_stdout:
            written = self.export(queryset, self.stdout_writer(), progress)
            destination = "standard output"
        else:
            path = Path(options["output"])
            written = self.export_to_file(queryset, path, progress)
            destination = str(path)

        if options["verbosity"] >= 1 and not csv_on_terminal:
            span = ""
            if since or until:
                span = f" from {since or 'the first day'} to {until or 'today'}"
            self.stderr.write(
                f"Exported {written:,} sign-up{'s' if written != 1 else ''}{span} "
                f"to {destination} in {time.monotonic() - started:.1f} s.",
                style_func=self.style.SUCCESS,  # not the red of errors
            )

    def select(self, since, until):
        """The sign-ups in the range; conditions on the indexed column itself."""
        queryset = Signup.objects.all()
        if since:
            queryset = queryset.filter(signed_up_at__gte=self.midnight(since))
        if until:
            queryset = queryset.filter(
                signed_up_at__lt=self.midnight(until + timedelta(days=1))
            )
        return queryset

    @staticmethod
    def midnight(day):
        return timezone.make_aware(datetime.combine(day, datetime.min.time()))

    def stdout_writer(self):
        """write(text) for standard output: UTF-8 bytes when it has a buffer
        (whatever the locale), else the text stream itself (call_command)."""
        self.stdout.flush()
        binary = getattr(self.stdout, "buffer", None)
        if binary is None:
            return self.stdout._out.write

        def write(text):
            binary.write(text.encode("utf-8"))

        return write

    def export_to_file(self, queryset, path, progress):
        directory = path.parent
        if not directory.is_dir():
            raise CommandError(f"Cannot write {path}: {directory} is not a directory.")
        # mkstemp: mode 0600, in the target's directory so the rename is atomic.
        handle, temporary = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=".partial", dir=directory
        )
        try:
            with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
                written = self.export(queryset, stream.write, progress)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return written

    def export(self, queryset, write, progress):
        """Write QUERYSET's CSV with WRITE; return the number of rows."""
        bar = ProgressBar(self.stderr._out, queryset.count()) if progress else None
        lines = csv_rows(queryset)
        buffer = [next(lines)]  # the header
        rows = 0
        try:
            for line in lines:  # csv_rows yields one line per sign-up
                buffer.append(line)
                rows += 1
                if len(buffer) >= LINES_PER_WRITE:
                    write("".join(buffer))
                    buffer.clear()
                    if bar:
                        bar.update(rows)
            write("".join(buffer))
            self.stdout.flush()
        except BrokenPipeError:
            # The reader went away (`| head`): no traceback, and none either
            # when Python flushes standard output on the way out.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise CommandError(
                f"Standard output was closed after {rows:,} rows."
            ) from None
        finally:
            if bar:
                bar.finish(rows)
        return rows

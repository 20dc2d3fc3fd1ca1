"""Write sign-ups as CSV: all of them or a date range, to stdout or a file."""

import os
import sys
import tempfile
import time
from argparse import ArgumentTypeError, BooleanOptionalAction
from datetime import date
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from accounts.export import csv_batches
from accounts.models import Signup


def iso_date(text):
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ArgumentTypeError(
            f"not a date in the form YYYY-MM-DD: {text!r}"
        ) from None


class Command(BaseCommand):
    help = "Write sign-ups as CSV, oldest first. See docs/operations.md."

    def add_arguments(self, parser):
        parser.add_argument(
            "-o",
            "--output",
            default="-",
            metavar="FILE",
            help="Write to FILE (under a temporary name, renamed when complete, "
            "readable by its owner only) instead of standard output ('-').",
        )
        for flag, which in (("--since", "on or after"), ("--until", "on or before")):
            parser.add_argument(
                flag,
                type=iso_date,
                metavar="YYYY-MM-DD",
                help=f"Only sign-ups {which} this day (in the site's time zone).",
            )
        parser.add_argument(
            "--progress",
            action=BooleanOptionalAction,
            help="Draw a progress bar on standard error "
            "(default: when it is a terminal, and the CSV is not).",
        )

    def handle(self, *args, since, until, output, progress, verbosity, **options):
        if since and until and since > until:
            raise CommandError(f"--since {since} is after --until {until}.")
        signups = Signup.objects.on_days(since, until)
        # CSV on a terminal: the bar and the summary would land in between
        # (and `docker compose exec` without -T merges the two streams).
        csv_on_terminal = output == "-" and self.stdout.isatty()
        if progress is None:
            progress = self.stderr.isatty() and not csv_on_terminal
        started = time.monotonic()

        if output == "-":
            stdout = self.stdout._out
            if hasattr(stdout, "reconfigure"):  # UTF-8, whatever the locale
                stdout.reconfigure(encoding="utf-8")
            written = self.export(signups, stdout.write, progress)
            output = "standard output"
        else:
            written = self.export_to_file(signups, Path(output), progress)

        if verbosity >= 1 and not csv_on_terminal:
            span = ""
            if since or until:
                span = f" from {since or 'the first day'} to {until or 'today'}"
            self.stderr.write(
                f"Exported {written:,} sign-up{'s' if written != 1 else ''}{span} "
                f"to {output} in {time.monotonic() - started:.1f} s.",
                style_func=self.style.SUCCESS,  # not the red of errors
            )

    def export_to_file(self, signups, path, progress):
        # mkstemp: mode 0600, in the target's directory so the rename is atomic.
        try:
            handle, temporary = tempfile.mkstemp(
                prefix=f".{path.name}.", suffix=".partial", dir=path.parent
            )
        except OSError as exc:
            raise CommandError(f"Cannot write {path}: {exc.strerror}.") from None
        try:
            with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
                written = self.export(signups, stream.write, progress)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return written

    def export(self, signups, write, progress):
        """Write the CSV of SIGNUPS with WRITE; return the number of rows."""
        rows = 0
        with tqdm(
            desc="Exporting sign-ups",
            total=signups.count() if progress else None,
            unit=" rows",
            file=self.stderr._out,
            disable=not progress,
            # Not the terminal's rows: tqdm hides a bar below the last one, and
            # a terminal that reports no size (some runners') has none.
            nrows=2,
        ) as bar:
            try:
                for text, count in csv_batches(signups):
                    write(text)
                    rows += count
                    bar.update(count)
                self.stdout.flush()
            except BrokenPipeError:
                # The reader went away (`| head`): no traceback, and none
                # either when Python flushes standard output on the way out.
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                raise CommandError(
                    f"Standard output was closed after {rows:,} rows."
                ) from None
        return rows

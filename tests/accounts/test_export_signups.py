"""
`manage.py export_signups`: CSV of all sign-ups or a date range, to standard
output or a file, streamed, with a progress bar on a terminal and none in a
pipe. In-process for the contents; in a child process, with a pipe or a
pseudo-terminal as its standard error, for the progress bar.
"""

import csv
import fcntl
import io
import os
import pty
import select
import stat
import struct
import subprocess
import tempfile
import termios
from datetime import UTC, datetime

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts.models import Signup
from tests.support.commands import manage, start_manage
from tests.support.export import HEADER, HEADER_LINE
from tests.support.stack import connect, migrated_database


def at(text):
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def add(name, email, when):
    signup = Signup.objects.create(name=name, email=email)
    Signup.objects.filter(pk=signup.pk).update(signed_up_at=when)


def export(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command("export_signups", *args, stdout=out, stderr=err)
    return list(csv.reader(io.StringIO(out.getvalue(), newline=""))), err.getvalue()


@pytest.fixture
def month(db):
    add("Ada Lovelace", "ada@example.com", at("2025-03-01T00:00:00"))
    add("Grace Hopper", "grace@example.com", at("2025-03-10T12:30:00"))
    add("=cmd|' /C calc'!A0", "formula@example.com", at("2025-03-15T08:00:00"))
    add("Alan Turing", "alan@example.com", at("2025-03-31T23:59:59"))
    add("Edsger Dijkstra", "edsger@example.com", at("2025-04-01T00:00:00"))


def test_writes_every_signup_oldest_first_with_a_header(month):
    rows, messages = export()

    assert rows[0] == HEADER
    assert [row[1] for row in rows[1:]] == [
        "ada@example.com",
        "grace@example.com",
        "formula@example.com",
        "alan@example.com",
        "edsger@example.com",
    ]
    assert rows[2] == [
        "Grace Hopper",
        "grace@example.com",
        "2025-03-10T12:30:00+00:00",
        "unconfirmed",
        "",
        "",
    ]
    assert "Exported 5 sign-ups to standard output" in messages


def test_cells_a_spreadsheet_would_run_are_neutralised(month):
    rows, _ = export()

    assert rows[3][0] == "'=cmd|' /C calc'!A0"


def test_each_row_carries_status_confirmation_time_and_consent_version(month):
    Signup.objects.filter(email="ada@example.com").update(
        status=Signup.Status.CONFIRMED,
        confirmed_at=at("2025-03-02T08:15:00.000250"),
        consent_version="0123abcd4567",
    )
    Signup.objects.filter(email="grace@example.com").update(
        status=Signup.Status.PENDING, consent_version="0123abcd4567"
    )

    rows, _ = export("--until", "2025-03-10")

    assert rows[1:] == [
        [
            "Ada Lovelace",
            "ada@example.com",
            "2025-03-01T00:00:00+00:00",
            "confirmed",
            "2025-03-02T08:15:00.000250+00:00",
            "0123abcd4567",
        ],
        [
            "Grace Hopper",
            "grace@example.com",
            "2025-03-10T12:30:00+00:00",
            "pending",
            "",
            "0123abcd4567",
        ],
    ]


def test_a_date_range_includes_both_days_whole(month):
    rows, messages = export("--since", "2025-03-10", "--until", "2025-03-31")

    assert [row[1] for row in rows[1:]] == [
        "grace@example.com",
        "formula@example.com",
        "alan@example.com",
    ]
    assert "Exported 3 sign-ups from 2025-03-10 to 2025-03-31" in messages


def test_open_ended_ranges(month):
    since, _ = export("--since", "2025-03-31")
    until, _ = export("--until", "2025-03-01")

    assert [row[1] for row in since[1:]] == ["alan@example.com", "edsger@example.com"]
    assert [row[1] for row in until[1:]] == ["ada@example.com"]


def test_an_empty_range_gives_just_the_header(month):
    rows, messages = export("--since", "2030-01-01")

    assert rows == [HEADER]
    assert "Exported 0 sign-ups" in messages


def test_since_after_until_is_refused(month):
    with pytest.raises(CommandError, match="after --until"):
        export("--since", "2025-04-01", "--until", "2025-03-01")


def test_a_malformed_date_is_refused_by_the_parser():
    with pytest.raises(
        CommandError, match="not a date in the form YYYY-MM-DD: '1/3/2025'"
    ):
        export("--since", "1/3/2025")


def test_a_file_is_complete_private_and_left_no_temporary_file(month, tmp_path):
    target = tmp_path / "signups.csv"
    target.write_text("an older export\n")

    _, messages = export("--output", str(target))

    with target.open(newline="", encoding="utf-8") as stream:
        rows = list(csv.reader(stream))
    assert len(rows) == 6
    assert target.read_bytes().startswith(HEADER_LINE.encode() + b"\r\n")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(path.name for path in tmp_path.iterdir()) == ["signups.csv"]
    assert f"Exported 5 sign-ups to {target}" in messages


def test_a_missing_directory_is_a_clear_error(tmp_path):
    target = tmp_path / "missing" / "signups.csv"
    with pytest.raises(CommandError) as error:
        export("--output", str(target))

    assert str(error.value) == f"Cannot write {target}: No such file or directory."


def test_no_progress_bar_when_standard_error_is_not_a_terminal(month):
    _, messages = export()

    assert "\r" not in messages
    assert "[" not in messages


def test_progress_can_be_forced_and_counts_every_row(month):
    _, messages = export("--progress")

    assert messages.startswith("\rExporting sign-ups:   0%|")
    assert "Exporting sign-ups: 100%|" in messages
    assert "| 5/5 [" in messages


# --------------------------------------------------------------------------
# in a child process: a real pipe, a real terminal


@pytest.fixture
def exported_database():
    """A migrated database on the shared server with 2,500 sign-ups."""
    with migrated_database("signup_export") as (env, db):
        with connect(db, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO accounts_signup (name, email)"
                " SELECT 'Person ' || n, 'person' || n || '@example.com'"
                " FROM generate_series(1, 2500) AS n"
            )
        yield env


def test_in_a_pipe_there_is_no_progress_bar(exported_database):
    result = manage("export_signups", env=exported_database)

    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2501
    assert result.stderr.startswith("Exported 2,500 sign-ups to standard output")
    assert "\r" not in result.stderr


def run_with_terminal_stderr(args, env, size=None):
    """Run manage.py ARGS with a pseudo-terminal as standard error and a file
    as standard output; return (exit status, stdout bytes, terminal text).
    SIZE is (rows, columns); without it the terminal reports none (0 by 0), as
    some runners' terminals do."""
    controller, terminal = pty.openpty()
    if size:
        fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", *size, 0, 0))
    # A file rather than a pipe, which nobody would read while the terminal is.
    with tempfile.TemporaryFile() as stdout:
        process = start_manage(
            *args, env=env, stdout=stdout, stderr=terminal, stdin=subprocess.DEVNULL
        )
        os.close(terminal)
        screen = b""
        while True:
            ready, _, _ = select.select([controller], [], [], 60)
            if not ready:
                process.kill()
                raise AssertionError("no output on the terminal for 60 s")
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            screen += chunk
        os.close(controller)
        status = process.wait(timeout=60)
        stdout.seek(0)
        return status, stdout.read(), screen.decode()


def test_on_a_terminal_a_progress_bar_counts_up_to_every_row(
    exported_database, tmp_path
):
    target = tmp_path / "all.csv"

    status, stdout, screen = run_with_terminal_stderr(
        ["export_signups", "--output", str(target)], exported_database, (24, 100)
    )

    assert status == 0, screen
    assert stdout == b""
    assert "\rExporting sign-ups:   0%|" in screen
    assert "Exporting sign-ups: 100%|" in screen
    assert "| 2500/2500 [" in screen
    bars = [part for part in screen.split("\r") if part.startswith("Exporting")]
    assert max(len(bar) for bar in bars) < 100  # the terminal's width
    assert "Exported 2,500 sign-ups to " in screen
    assert len(target.read_text().splitlines()) == 2501


def test_csv_to_standard_output_with_a_terminal_for_errors_gets_the_bar_there(
    exported_database,
):
    status, stdout, screen = run_with_terminal_stderr(
        ["export_signups", "--since", "2000-01-01"], exported_database
    )

    assert status == 0, screen
    assert stdout.count(b"\r\n") == 2501  # only CSV on standard output
    assert "Exporting sign-ups: 100%|" in screen
    assert "| 2500/2500 [" in screen


def test_a_reader_that_stops_early_gets_no_traceback(exported_database):
    # manage.py export_signups | head -n 3
    export = start_manage("export_signups", env=exported_database)
    head = subprocess.run(
        ["head", "-n", "3"], stdin=export.stdout, capture_output=True, timeout=120
    )
    export.stdout.close()  # only head holds the pipe's reading end now
    errors = export.stderr.read()
    export.stderr.close()

    assert export.wait(timeout=60) == 1
    assert head.stdout.decode().splitlines()[0] == HEADER_LINE
    assert len(head.stdout.splitlines()) == 3
    assert "Traceback" not in errors
    assert "Standard output was closed after" in errors

"""
docker/web/start.sh with stand-ins for python and gunicorn on PATH: what it
runs, and when the container's SIGTERM reaches gunicorn.
"""

import shutil
import signal
import subprocess
import time

import pytest

from tests.support.commands import PROJECT_ROOT

FAKE_PYTHON = """#!/bin/sh
echo "python $*" >>"$LOG"
"""
# Serves until SIGTERM, then logs when it got it and exits 0, as gunicorn
# does once it has drained.
FAKE_GUNICORN = """#!/bin/sh
trap 'echo "TERM $(date +%s.%N)" >>"$LOG"; exit 0' TERM
echo "gunicorn $*" >>"$LOG"
while :; do sleep 0.05; done
"""


@pytest.fixture
def start(tmp_path):
    app = tmp_path / "app"
    (app / "docker" / "web").mkdir(parents=True)
    script = app / "docker" / "web" / "start.sh"
    shutil.copy2(PROJECT_ROOT / "docker" / "web" / "start.sh", script)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("python", FAKE_PYTHON), ("gunicorn", FAKE_GUNICORN)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    log = tmp_path / "log"

    def run(**environment):
        process = subprocess.Popen(
            ["/bin/sh", str(script)],
            env={
                "PATH": f"{bin_dir}:/usr/bin:/bin",
                "LOG": str(log),
                **environment,
            },
        )
        deadline = time.monotonic() + 10
        while not (log.exists() and "gunicorn" in log.read_text()):
            assert time.monotonic() < deadline, "gunicorn never started"
            time.sleep(0.05)
        return process, log

    return run


def term_times(log):
    return [
        float(line.split()[1])
        for line in log.read_text().splitlines()
        if line.startswith("TERM")
    ]


def test_bootstrap_runs_first_then_gunicorn_with_the_sites_config(start):
    process, log = start()
    process.send_signal(signal.SIGTERM)

    assert process.wait(timeout=10) == 0
    lines = log.read_text().splitlines()
    assert lines[0] == "python manage.py bootstrap --no-input --timeout 60"
    assert lines[1] == (
        "gunicorn --config docker/web/gunicorn.conf.py signup_site.wsgi:application"
    )


def test_without_a_delay_sigterm_reaches_gunicorn_at_once(start):
    process, log = start()
    sent = time.time()
    process.send_signal(signal.SIGTERM)

    assert process.wait(timeout=10) == 0
    assert term_times(log)[0] - sent < 1


def test_with_a_delay_gunicorn_keeps_serving_that_long_then_exits_cleanly(start):
    process, log = start(WEB_STOP_DELAY="2")
    sent = time.time()
    process.send_signal(signal.SIGTERM)

    assert process.wait(timeout=10) == 0
    (received,) = term_times(log)
    assert 2 <= received - sent < 3.5

"""
The benchmark suite (bench/) still runs, end to end, in a few seconds:
``python -m bench --quick`` starts the real stack on loopback, loads the site
(with and without double opt-in) and the ceiling app with wrk, has the mailer
send a small backlog and the mail of a few steady sign-ups to a mail server on
loopback, loads sign-ups with COPY and times the owner's paths. This checks
that it produced every figure, that no request failed, that every sign-up
answered with the redirect is exactly one row (and, with double opt-in, one
queued mail), and that every mail arrived exactly once. It never checks speed:
a smoke run is far too short for that, and these machines drift.

Needs Debian's nginx and wrk (``apt-get install nginx wrk``): without them
this fails in CI (CI=true) and is skipped elsewhere, like the serving tests.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

from loopback.nginx import NGINX_BINARY
from tests.support.ci import unavailable
from tests.support.commands import PROJECT_ROOT

# The benchmark's default targets: the site, the site with double opt-in and
# the ceiling app.
TARGETS = ("site", "opt-in", "ceiling")


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    missing = [
        tool
        for tool, present in (
            ("nginx", os.access(NGINX_BINARY, os.X_OK)),
            ("wrk", shutil.which("wrk") is not None),
        )
        if not present
    ]
    if missing:
        reason = (
            f"the benchmark needs {' and '.join(missing)} "
            f"(apt-get install {' '.join(missing)})"
        )
        unavailable(reason)
    output = tmp_path_factory.mktemp("bench") / "results.json"
    report = output.with_suffix(".md")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--json",
            str(output),
            "--report",
            str(report),
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    return result, output, report


def test_the_quick_run_succeeds(smoke_run):
    result, output, report = smoke_run

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert output.exists()
    assert report.read_text().startswith("# Performance")


def test_every_phase_has_its_figures_and_no_errors(smoke_run):
    results = json.loads(smoke_run[1].read_text())

    phases = {
        (phase["target"], phase["scenario"]): phase for phase in results["phases"]
    }
    assert set(phases) == {
        (target, scenario) for target in TARGETS for scenario in ("get", "post")
    }
    for phase in phases.values():
        assert phase["requests"] > 0
        assert phase["rps"] > 0
        assert 0 < phase["p50_ms"] <= phase["p90_ms"] <= phase["p99_ms"]
        assert phase["app_cpu_ms"] > 0
        assert phase["errors"] == 0, phase
    expected = {"get": "200", "post": "302"}
    for (_target, scenario), phase in phases.items():
        assert set(phase["statuses"]) <= {expected[scenario], "499"}, phase


def test_rows_equal_the_sign_ups_answered_with_the_redirect(smoke_run):
    results = json.loads(smoke_run[1].read_text())

    for phase in results["phases"]:
        if phase["scenario"] == "post":
            assert phase["app_successes"] > 0
            assert phase["rows_added"] == phase["app_successes"], phase
    for entry in results["summary"]["post"].values():
        assert entry["rows_match"]


def test_with_double_opt_in_each_sign_up_queues_one_mail_and_without_none(
    smoke_run,
):
    results = json.loads(smoke_run[1].read_text())

    assert results["confirming"] == "opt-in"
    for phase in results["phases"]:
        if phase["scenario"] == "post":
            queued = phase["rows_added"] if phase["target"] == "opt-in" else 0
            assert phase["mails_queued"] == phase["mails_expected"] == queued, phase


def test_ratios_to_the_ceiling_are_reported(smoke_run):
    results = json.loads(smoke_run[1].read_text())

    for scenario in ("get", "post"):
        for name in ("site", "opt-in"):
            site = results["summary"][scenario][name]
            assert site["vs"]["ceiling"]["rps"] > 0
            assert site["vs"]["ceiling"]["p99_ms"] > 0
            assert site["vs"]["ceiling"]["app_cpu_ms"] > 0
        assert results["summary"][scenario]["opt-in"]["vs"]["site"]["rps"] > 0
        assert results["summary"][scenario]["ceiling"]["vs"] == {}


def test_the_mailer_sent_the_backlog_each_mail_once(smoke_run):
    mail = json.loads(smoke_run[1].read_text())["mail"]
    backlog = mail["backlog"]

    assert backlog["mails"] > 0
    assert backlog["accepted"] == backlog["mails"], backlog
    assert backlog["missing"] == backlog["twice"] == 0, backlog
    assert backlog["outbox"] == {"sent": {"mails": backlog["mails"], "attempts": 1}}
    assert backlog["mails_per_s"] > 0
    assert backlog["mailer_cpu_ms"] > 0
    assert mail["mailer_exit"] == 0


def test_steady_sign_ups_got_their_mail_and_were_timed(smoke_run):
    mail = json.loads(smoke_run[1].read_text())["mail"]
    steady = mail["steady"]

    assert steady["signups"] > 0
    assert steady["statuses"] == {"302": steady["signups"]}, steady
    assert steady["stored"] == steady["accepted"] == steady["signups"], steady
    assert steady["missing"] == steady["twice"] == 0, steady
    assert steady["outbox"] == {"sent": {"mails": steady["signups"], "attempts": 1}}
    assert 0 < steady["latency_s_p50"] <= steady["latency_s_p95"]
    assert steady["latency_s_p95"] <= steady["latency_s_max"]
    # Every mail the mailer logged as sent is one the mail server took.
    sent = mail["backlog"]["accepted"] + steady["accepted"]
    assert mail["mailer_log"] == {"sent": sent, "deferred": 0, "failed": 0}


def test_the_report_has_the_mail_and_its_targets(smoke_run):
    report = smoke_run[2].read_text()

    assert "\n## Mail\n" in report
    for check in (
        "Sign-up `POST /` with double opt-in: req/s over the ceiling's",
        "Sign-up `POST /` with double opt-in: Mails queued = rows added",
        "Mailer, a backlog of",
        "Sign-up to its mail accepted by SMTP at",
    ):
        assert f"| {check}" in report


def test_the_owner_paths_were_timed_on_the_loaded_table(smoke_run):
    owner = json.loads(smoke_run[1].read_text())["owner"]

    assert owner["rows"] >= owner["load"]["rows"] > 0
    for key in ("admin_list", "admin_search_email", "admin_search_name", "readyz"):
        assert owner[key]["requests"] > 0
        assert owner[key]["p50_ms"] > 0
        assert owner[key]["errors"] == 0, owner[key]
    for key in ("admin_export", "command_export"):
        assert owner[key]["rows"] == owner["rows"]
        assert owner[key]["wall_s"] > 0
        assert owner[key]["peak_rss_mb"] > 0
    assert owner["bootstrap"]["median_s"] > 0
    assert owner["worker_memory"]["requests"] >= 300
    assert owner["worker_memory"]["rss_mb"] > 0

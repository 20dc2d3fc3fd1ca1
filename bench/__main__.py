"""
The benchmark in one command (docs/testing.md#benchmark): the site (with and
without double opt-in) and its ceiling app taking turns under wrk, the mailer
with a backlog and under a steady stream of sign-ups, then the owner's paths on
a million sign-ups. Exits 1 if a phase had errors or lost sign-ups or mail;
speed alone never fails it.
"""

import argparse
import json
import shlex
import shutil
import sys
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path

from bench import mail, owner, report
from bench.load import run_phase
from bench.stack import Stack, TargetSpec
from loopback.processes import PROJECT_ROOT

DEFAULT_REPORT = PROJECT_ROOT / "docs" / "performance.md"
# Each integer option: the full run's value, the quick run's, what it is.
SETTINGS = tomllib.loads(Path(__file__).with_name("settings.toml").read_text())
# The site as configured by default, the site with double opt-in (and mail to
# the benchmark's loopback mail server), and the ceiling app.
DEFAULT_TARGETS = ["site", "opt-in=site,SIGNUP_DOUBLE_OPT_IN=true", "ceiling"]
POSTGRES_SETTINGS = ("fsync", "synchronous_commit", "shared_buffers", "max_connections")


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark the sign-up site against its ceiling app on "
        "loopback; see docs/performance.md.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run of a few seconds, with the second value of each "
        "setting below; no report unless --report is given",
    )
    for name, (full, quick, text) in SETTINGS.items():
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, type=int, help=f"{text} [{full}; {quick}]")
    parser.add_argument(
        "--scenario",
        action="append",
        choices=("get", "post"),
        help="only these scenarios (repeatable) [both]",
    )
    parser.add_argument(
        "--target",
        action="append",
        metavar="NAME=KIND[,VAR=VALUE...][,template=PATH][,root=PATH][,config=PATH]",
        help="what to load, in this order each round (repeatable); KIND is site "
        "or ceiling, VAR=VALUE goes into its environment, template= replaces "
        "the nginx template, root= runs another copy of the project, config= "
        "another gunicorn config; a site with SIGNUP_DOUBLE_OPT_IN on mails "
        f"to the benchmark's mail server [{' '.join(DEFAULT_TARGETS)}]",
    )
    parser.add_argument(
        "--no-owner", action="store_true", help="skip the owner's paths"
    )
    parser.add_argument("--no-load", action="store_true", help="skip the load phases")
    parser.add_argument(
        "--no-mail",
        action="store_true",
        help="skip the mailer's phases (they need a target with double opt-in)",
    )
    parser.add_argument(
        "--report",
        type=Path,
        help="Markdown report [docs/performance.md; none with --quick]",
    )
    parser.add_argument("--no-report", action="store_true", help="write no Markdown")
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    parser.add_argument(
        "--note", action="append", default=[], help="a line for the report's notes"
    )
    options = parser.parse_args(argv)
    for name, (full, quick, _text) in SETTINGS.items():
        if getattr(options, name) is None:
            setattr(options, name, quick if options.quick else full)
    if not (options.quick or options.no_report or options.report):
        options.report = DEFAULT_REPORT
    if options.no_report:
        options.report = None
    try:
        options.target = [
            TargetSpec.parse(text) for text in options.target or DEFAULT_TARGETS
        ]
    except ValueError as error:
        parser.error(str(error))
    names = [spec.name for spec in options.target]
    if len(set(names)) != len(names):
        parser.error(f"target names must differ: {names}")
    if not shutil.which("wrk"):
        parser.error("the benchmark needs wrk: apt-get install wrk")
    options.scenario = options.scenario or ["get", "post"]
    return options


def shown_command(argv):
    """The command line without what only this run needs (--json, --note)."""
    shown, skip = [], False
    for argument in argv:
        if not (skip or argument.startswith(("--json", "--note"))):
            shown.append(argument)
        skip = argument in ("--json", "--note")
    return shlex.join([".venv/bin/python", "-m", "bench", *shown])


def run_load(stack, options):
    """Warm-up phases (round 0, unrecorded), then round after round of A B."""
    phases = []
    rounds = [(0, options.warmup)] if options.warmup else []
    rounds += [(number, options.duration) for number in range(1, options.rounds + 1)]
    wrk = {"connections": options.connections, "threads": options.threads}
    for number, duration in rounds:
        print(f"round {number} of {options.rounds}" if number else "warm-up")
        for scenario in options.scenario:
            for target in stack.targets:
                phase = run_phase(
                    target, scenario, stack.database, number, duration=duration, **wrk
                )
                if number:
                    phases.append(phase)
                    print(report.row(report.phase_row(phase)))
    return phases


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    options = parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # progress as it happens
    started = time.monotonic()
    results = {
        "command": shown_command(argv),
        "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "options": {name: getattr(options, name) for name in SETTINGS},
        "machine": report.machine(),
        "load_average": [report.load_average()],
        "notes": options.note,
    }
    with Stack(options.target) as stack:
        names = [target.name for target in stack.targets]
        first = {target.spec.kind: target for target in reversed(stack.targets)}
        site, ceiling = first.get("site"), first.get("ceiling")
        confirming = next((t for t in stack.targets if t.spec.confirming), None)
        results["site"] = site and site.name
        results["ceiling"] = ceiling and ceiling.name
        results["confirming"] = confirming and confirming.name
        results["versions"] = report.versions(stack.database)
        results["postgresql"] = {
            name: stack.database.query(f"SHOW {name}") for name in POSTGRES_SETTINGS
        }
        results["targets"] = [
            {
                "name": target.name,
                "describe": target.spec.description,
                "gunicorn": report.gunicorn_settings(target),
            }
            for target in stack.targets
        ]
        results["phases"] = [] if options.no_load else run_load(stack, options)
        results["summary"] = report.summarize(
            results["phases"], names, results["ceiling"]
        )
        if confirming and not options.no_mail:
            results["mail"] = mail.run(stack, confirming, options)
        if site and not options.no_owner:
            results["owner"] = owner.run(stack, site, options)
    results["load_average"].append(report.load_average())
    results["wall_s"] = time.monotonic() - started
    results["checks"] = report.checks(results)
    print(report.site_and_ceiling(results["summary"]))
    print("\n" + report.targets(results))
    if options.quick:
        print("(a smoke run: too short for the figures to mean anything)")
    if options.json:
        options.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    if options.report:
        options.report.write_text(report.markdown(results))
        print(f"wrote {options.report}")
    broken = [
        json.dumps(phase)
        for phase in results["phases"]
        if phase["errors"]
        or phase.get("rows_added") != phase.get("app_successes")
        or phase.get("mails_queued") != phase.get("mails_expected")
    ]
    if results.get("mail"):
        broken += mail.lost(results["mail"])
    for problem in broken:
        print("FAILED:", problem)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())

"""
The benchmark suite, in one command:

    .venv/bin/python -m bench                 # full run, writes docs/performance.md
    .venv/bin/python -m bench --quick         # a few seconds, checks it all works

It starts, on loopback only, a throwaway PostgreSQL cluster and, for each
target, gunicorn with docker/web/gunicorn.conf.py behind nginx with the project's
template: by default the site and the ceiling app (bench/ceiling.py). It
warms each target up, then loads them in turn, round after round (A B A B),
with wrk: ``GET /``, then sign-up POSTs with a new address each. After every
POST phase the rows added must equal the sign-ups the app answered with its
redirect. Then it loads a million sign-ups with COPY and times the owner's
paths on them. It prints a summary, writes JSON (--json) and Markdown
(--report), and exits 1 if any phase had errors or a row count did not match
(speed alone never fails it).

Every load is bounded in time, every process started here is stopped by its
pid, and nothing listens beyond 127.0.0.1.
"""

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from bench import owner as owner_paths
from bench import report
from bench.load import run_phase
from bench.loader import load
from bench.stack import Stack, TargetSpec
from loopback.processes import PROJECT_ROOT

POSTGRES_SETTINGS = ("fsync", "synchronous_commit", "shared_buffers", "max_connections")
DEFAULT_REPORT = PROJECT_ROOT / "docs" / "performance.md"
# The full run's settings, with what each is.
FULL_HELP = {
    "rounds": (5, "rounds of A B phases"),
    "duration": (10, "seconds per phase"),
    "warmup": (3, "seconds of warm-up per target, 0 for none"),
    "rows": (1_000_000, "sign-ups loaded for the owner's paths"),
    "owner_duration": (5, "seconds each owner path is timed"),
    "memory_requests": (10_000, "requests one worker serves before its RSS is read"),
    "bootstrap_runs": (5, "timed bootstrap runs"),
}
FULL = {name: default for name, (default, _help) in FULL_HELP.items()}
QUICK = {
    "rounds": 1,
    "duration": 1,
    "warmup": 0,
    "rows": 20_000,
    "owner_duration": 1,
    "memory_requests": 300,
    "bootstrap_runs": 1,
}


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark the sign-up site against its ceiling app on "
        "loopback; see docs/performance.md.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="A smoke run of a few seconds: 1 round of 1 s phases, "
        f"{QUICK['rows']:,} rows; no report unless --report is given.",
    )
    for name, (default, text) in FULL_HELP.items():
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, type=int, help=f"{text} [{default}]")
    parser.add_argument("--connections", type=int, default=16, help="[16]")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads [1]")
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
        "or ceiling, VAR=VALUE goes into its environment (WEB_CONCURRENCY, "
        "GUNICORN_CMD_ARGS, DJANGO_SETTINGS_MODULE...), template= replaces "
        "the nginx template, root= runs another copy of the project (a git "
        "worktree of an earlier commit), config= another gunicorn config "
        "[site, ceiling]",
    )
    parser.add_argument(
        "--no-owner", action="store_true", help="skip the owner's paths"
    )
    parser.add_argument(
        "--no-load", action="store_true", help="skip the site/ceiling phases"
    )
    parser.add_argument(
        "--report",
        type=Path,
        help=f"Markdown report [{DEFAULT_REPORT.relative_to(PROJECT_ROOT)}; "
        "none with --quick]",
    )
    parser.add_argument("--no-report", action="store_true", help="write no Markdown")
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    parser.add_argument(
        "--note", action="append", default=[], help="a line for the report's notes"
    )
    options = parser.parse_args(argv)
    defaults = QUICK if options.quick else FULL
    for name, value in defaults.items():
        if getattr(options, name) is None:
            setattr(options, name, value)
    if options.report is None and not options.quick and not options.no_report:
        options.report = DEFAULT_REPORT
    if options.no_report:
        options.report = None
    options.targets = [
        TargetSpec.parse(text) for text in (options.target or ["site", "ceiling"])
    ]
    names = [spec.name for spec in options.targets]
    if len(set(names)) != len(names):
        parser.error(f"target names must differ: {names}")
    options.scenarios = options.scenario or ["get", "post"]
    return options


def _num(value, digits):
    return "-" if value is None else f"{value:,.{digits}f}"


def say(text):
    print(text, flush=True)


def phase_line(phase):
    line = (
        f"  {phase.scenario:4} {phase.target:12} {phase.rps:8,.0f} req/s  "
        f"p50 {phase.p50_ms:6.2f}  p90 {phase.p90_ms:6.2f}  p99 {phase.p99_ms:7.2f} ms"
        f"  errors {phase.errors}"
    )
    if phase.app_cpu_ms is not None:
        line += f"  cpu app {phase.app_cpu_ms:5.2f}"
        others = sum(
            value for name, value in phase.cpu_ms.items() if name != "app" and value
        )
        line += f" other {others:5.2f} ms/req"
    if phase.rows_added is not None:
        line += f"  rows {phase.rows_added} / redirects {phase.app_successes}"
        if not phase.rows_match:
            line += "  MISMATCH"
    return line


def run_load(stack, options):
    """Warm-up phases (unrecorded), then round after round of A B phases."""
    phases = []
    rounds = [(0, options.warmup)] if options.warmup else []
    rounds += [(number, options.duration) for number in range(1, options.rounds + 1)]
    for round_number, duration in rounds:
        say(f"round {round_number} of {options.rounds}" if round_number else "warm-up")
        for scenario in options.scenarios:
            for target in stack.targets:
                phase = run_phase(
                    target,
                    scenario,
                    database=stack.database,
                    duration=duration,
                    connections=options.connections,
                    threads=options.threads,
                    round_number=round_number,
                )
                if round_number:
                    phases.append(phase)
                    say(phase_line(phase))
    return phases


def run_owner(stack, options, site):
    """Bootstrap (creating the admin), the load of ROWS, then the timings."""
    password = "bench-" + stack.secret_key[:24]
    env = {
        **site.env,
        "DJANGO_SUPERUSER_USERNAME": owner_paths.ADMIN_USER,
        "DJANGO_SUPERUSER_EMAIL": "owner@example.com",
        "DJANGO_SUPERUSER_PASSWORD": password,
    }
    results = {"target": site.name, "rows": options.rows}
    owner_paths.bootstrap_runs(env, runs=1)  # creates the admin account
    with stack.database.connect() as conn:
        # The load phases' sign-ups all fell on today: they would skew the
        # owner's pages (the chart counts the last 30 days). Exactly ROWS.
        conn.execute("TRUNCATE accounts_signup RESTART IDENTITY")
        conn.commit()
        results["load"] = load(conn, options.rows)
        results["table_size"] = conn.execute(
            "SELECT pg_size_pretty(pg_total_relation_size('accounts_signup'))"
        ).fetchone()[0]
    results["rows"] = stack.database.rows()
    say(
        f"loaded {options.rows:,} sign-ups in {results['load']['total_s']:.1f} s "
        f"({results['rows']:,} rows)"
    )
    session = owner_paths.AdminSession(site, owner_paths.ADMIN_USER, password)
    results.update(
        owner_paths.admin_paths(
            site, session, stack.database, duration=options.owner_duration
        )
    )
    results["readyz"] = owner_paths.readiness(site, duration=options.owner_duration)
    for key in ("admin_list", "admin_search_email", "admin_search_name", "readyz"):
        item = results[key]
        say(f"  {key:20} p50 {item['p50_ms']:8.2f} ms  ({item['requests']} requests)")
    results["bootstrap"] = owner_paths.bootstrap_runs(env, runs=options.bootstrap_runs)
    say(f"  bootstrap            {results['bootstrap']['median_s']:.2f} s")
    results["admin_export"] = owner_paths.admin_export(stack, site.spec, password)
    say(
        f"  admin export         {results['admin_export']['wall_s']:.1f} s, "
        f"peak {results['admin_export']['peak_rss_mb']:.0f} MB, "
        f"{results['admin_export']['rows']:,} rows"
    )
    results["command_export"] = owner_paths.command_export(env, stack.root)
    if results["command_export"]:
        say(
            f"  export_signups       {results['command_export']['wall_s']:.1f} s, "
            f"peak {results['command_export']['peak_rss_mb']:.0f} MB"
        )
    results["worker_memory"] = owner_paths.worker_memory(
        stack,
        site.spec,
        requests_wanted=options.memory_requests,
        time_limit=max(20, options.memory_requests / 100),
    )
    say(
        f"  worker RSS           {results['worker_memory']['rss_mb']:.1f} MB after "
        f"{results['worker_memory']['requests']:,} requests"
    )
    return results


def main(argv=None):
    options = parse_args(sys.argv[1:] if argv is None else argv)
    started = time.monotonic()
    started_text = report.now_text()
    machine = report.machine()
    command = ".venv/bin/python -m bench " + shlex.join(
        report.shown_arguments(sys.argv[1:] if argv is None else argv)
    )
    with Stack(options.targets) as stack:
        say(
            f"stack up in {time.monotonic() - started:.1f} s: "
            + ", ".join(f"{t.name} on {t.url}" for t in stack.targets)
        )
        names = [target.name for target in stack.targets]
        site = next((t for t in stack.targets if t.spec.kind == "site"), None)
        ceiling = next((t for t in stack.targets if t.spec.kind == "ceiling"), None)
        phases = [] if options.no_load else run_load(stack, options)
        owner = None
        if not options.no_owner and site is not None:
            owner = run_owner(stack, options, site)
        gunicorn_keys = report.GUNICORN_KEYS
        results = {
            "command": command.strip(),
            "started": started_text,
            "options": {
                key: getattr(options, key)
                for key in ("connections", "threads", "quick", *FULL)
            },
            "meta": {
                "machine": machine,
                "load_average_end": report.machine()["load_average"],
                "versions": report.versions(stack.database),
                "postgresql": {
                    name: stack.database.query(f"SHOW {name}")
                    for name in POSTGRES_SETTINGS
                },
                "gunicorn_keys": gunicorn_keys,
            },
            "targets": [
                {
                    "name": target.name,
                    "kind": target.spec.kind,
                    "describe": target.spec.describe(),
                    "gunicorn": report.gunicorn_settings(target),
                }
                for target in stack.targets
            ],
            "site": site.name if site else None,
            "ceiling": ceiling.name if ceiling else None,
            "phases": [phase.as_dict() for phase in phases],
            "summary": report.summarize(
                phases, names, ceiling.name if ceiling else None
            ),
            "owner": owner,
            "notes": options.note,
        }
    results["wall_s"] = time.monotonic() - started
    results["checks"] = [
        {"what": what, "measured": measured, "limit": limit, "met": met}
        for what, measured, limit, met in report.checks(results)
    ]
    say("")
    say(
        "medians; ratios paired by round:   req/s    p99 ms  CPU ms/req"
        "  ÷ceiling(req/s p99 CPU)  ÷" + names[0] + "(req/s p99 CPU)"
    )
    for scenario, entries in results["summary"].items():
        for name, entry in entries.items():
            line = (
                f"  {scenario:4} {name:12} {_num(entry['rps'], 0):>16} "
                f"{_num(entry['p99_ms'], 2):>9} {_num(entry['app_cpu_ms'], 3):>11}  "
                f"{_num(entry.get('rps_ratio'), 2):>6} "
                f"{_num(entry.get('p99_ratio'), 2):>5} "
                f"{_num(entry.get('cpu_ratio'), 2):>5}"
            )
            first = entry.get("vs_first")
            if first:
                line += (
                    f"   {_num(first['rps'], 2):>6} {_num(first['p99_ms'], 2):>5} "
                    f"{_num(first['app_cpu_ms'], 2):>5}"
                )
            say(line)
    say("")
    if options.quick:
        say("(a smoke run: too short for the figures to mean anything)")
    for what, measured, limit, met in report.checks(results):
        say(f"{'ok  ' if met else 'MISS'} {what}: {measured} (limit {limit})")
    if options.json:
        options.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    if options.report:
        options.report.parent.mkdir(parents=True, exist_ok=True)
        options.report.write_text(report.markdown(results))
        say(f"wrote {options.report}")
    broken = [phase for phase in phases if phase.errors or not phase.rows_match]
    for phase in broken:
        say(f"FAILED: {phase_line(phase)}")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())

"""A run's medians, ratios to the ceiling and targets met, as docs/performance.md.
``python -m bench.report RUN.json PAGE.md`` rewrites a page from a run's --json."""

import json
import os
import platform
import re
import statistics
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from bench.load import CPU_PARTS
from loopback.nginx import NGINX_BINARY

SCENARIOS = {"get": "`GET /`", "post": "Sign-up `POST /`"}
GUNICORN_KEYS = ("workers", "worker_class", "max_requests", "max_requests_jitter")
CPU_KEYS = tuple(f"{part}_cpu_ms" for part in CPU_PARTS)
MEDIANS = ("rps", "p50_ms", "p90_ms", "p99_ms", *CPU_KEYS)
SUMS = ("requests", "errors", "cut_off", "rows_added", "app_successes")
# The figures compared with another target's in the same round: their titles.
RATIOS = {"rps": "req/s", "p99_ms": "p99", "app_cpu_ms": "CPU"}
ROWS_CHECK = "Rows added = sign-ups answered with the redirect"
OWNER_PATHS = ("admin_list", "admin_search_email", "admin_search_name", "readyz")
# The targets for the owner's paths: result, figure, limit, unit, title.
OWNER_LIMITS = [
    line.split(maxsplit=4)
    for line in """
admin_list p50_ms 150 ms Admin list page, p50
admin_search_email p50_ms 50 ms Admin search by a full email, p50
admin_search_name p50_ms 300 ms Admin search by part of a name, p50
readyz p50_ms 5 ms `/readyz`, p50
admin_export wall_s 15 s CSV export of all rows (admin action), wall
admin_export peak_rss_mb 150 MB CSV export (admin action), the worker's peak RSS
command_export wall_s 15 s CSV export of all rows (`export_signups`), wall
command_export peak_rss_mb 150 MB CSV export (`export_signups`), the process's peak RSS
bootstrap median_s 1 s `bootstrap` on a ready database, median wall
worker_memory rss_mb 80 MB A worker's RSS after the public requests
""".strip().splitlines()
]


def machine():
    """The machine, as the rows of the report's table."""
    cpu = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
    debian = Path("/etc/debian_version")
    system = f"Debian {debian.read_text().strip()}" if debian.exists() else "Linux"
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "CPU": f"{cpu[1] if cpu else platform.machine()}, {os.cpu_count()} cores",
        "Memory": f"{memory / 2**30:.1f} GiB",
        "OS": f"{system}, Linux {platform.release()}",
    }


def load_average():
    return " ".join(f"{load:.2f}" for load in os.getloadavg())


def first_line(*command):
    result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    return (result.stdout + result.stderr).splitlines()[0]


def versions(database):
    return {
        "python": platform.python_version(),
        **{name: version(name) for name in ("django", "gunicorn", "psycopg")},
        "postgresql": database.query("SHOW server_version"),
        "nginx": first_line(NGINX_BINARY, "-v").removeprefix("nginx version: "),
        "wrk": first_line("wrk", "--version").split(" [")[0],
    }


def gunicorn_settings(target):
    """The settings gunicorn runs TARGET with, as ``--print-config`` shows."""
    printed = subprocess.run(
        [*target.gunicorn.command[:-1], "--print-config"],
        env=target.env,
        cwd=target.gunicorn.root,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    settings = dict(re.findall(r"^(\w+)\s+= (.*)$", printed, re.MULTILINE))
    return {key: settings.get(key, "?") for key in GUNICORN_KEYS}


def median(values):
    values = [value for value in values if value is not None]
    return statistics.median(values) if values else None


def summarize(phases, names, ceiling):
    """Per scenario and target: medians over rounds, sums, and under "vs" the
    median ratios to the same round's phase of the ceiling and the first target."""
    by_round = {(p["round"], p["scenario"], p["target"]): p for p in phases}
    summary = {}
    for scenario in SCENARIOS:
        for name in names:
            mine = [
                p for p in phases if (p["scenario"], p["target"]) == (scenario, name)
            ]
            if not mine:
                continue
            entry = {key: median(p[key] for p in mine) for key in MEDIANS}
            entry |= {key: sum(p[key] for p in mine) for key in SUMS if key in mine[0]}
            entry["rows_match"] = all(
                p.get("rows_added") == p.get("app_successes") for p in mine
            )
            # The ceiling is compared with nothing; a variant also with the first.
            others = [] if name == ceiling else dict.fromkeys((ceiling, names[0]))
            entry["vs"] = {}
            for other in (o for o in others if o and o != name):
                pairs = [(p, by_round.get((p["round"], scenario, other))) for p in mine]
                entry["vs"][other] = {
                    key: median(p[key] / q[key] for p, q in pairs if q and q[key])
                    for key in RATIOS
                }
            summary.setdefault(scenario, {})[name] = entry
    return summary


def checks(results):
    """[(what, measured, limit, met)] for every target of the issue."""
    site, ceiling = results["site"], results["ceiling"]
    rows = []
    for scenario, title in SCENARIOS.items():
        entry = results["summary"].get(scenario, {}).get(site)
        ratios = entry and entry["vs"].get(ceiling)
        if not ratios or ratios["rps"] is None:
            continue
        rps, p99, errors = ratios["rps"], ratios["p99_ms"], entry["errors"]
        rows += [
            (f"{title}: req/s over the ceiling's", f"{rps:.2f}", "≥ 0.40", rps >= 0.4),
            (f"{title}: p99 over the ceiling's", f"{p99:.2f}x", "≤ 3x", p99 <= 3),
            (f"{title}: errors", errors, 0, errors == 0),
        ]
        if scenario == "post":
            added = f"{entry['rows_added']:,} = {entry['app_successes']:,}"
            rows.append((ROWS_CHECK, added, "equal", entry["rows_match"]))
    owner = results.get("owner") or {}
    for item, figure, limit, unit, what in OWNER_LIMITS:
        if item in owner:
            value = owner[item][figure]
            met = value < float(limit)
            rows.append((what, f"{value:,.1f} {unit}", f"< {limit} {unit}", met))
    return rows


def fmt(value, digits=2):
    return "-" if value is None else f"{value:,.{digits}f}"


def row(cells):
    return "| " + " | ".join(map(str, cells)) + " |"


def table(header, rows, text_columns=1):
    """A Markdown table: the first TEXT_COLUMNS columns left, the rest right."""
    rule = ["---"] * text_columns + ["---:"] * (len(header) - text_columns)
    return "\n".join(row(cells) for cells in [header, rule, *rows])


TOP = """\
# Performance

The sign-up site against its own ceiling, measured by `bench/` and written by
the run it describes. Timings on these shared machines drift by up to 30 %
within minutes, so what matters are the ratios of one run: the site and the
ceiling app take turns (A B A B) under the same load, behind the same nginx,
with the same gunicorn settings and the same PostgreSQL. How to run it, and
to measure a change against what it replaces: [Testing](testing.md#benchmark).

```sh
{command}
```

Run on {started} ({minutes:.1f} min).

## Machine and versions

{machine}

## Settings

- Load: wrk, {threads} thread, {connections} connections, {duration} s per
  phase after {warmup} s of warm-up, {rounds} rounds, with a browser's headers
  (Accept-Encoding: gzip, so nginx compresses). `GET /` as a first visit (no
  cookie); sign-up POSTs with a new address each, all with one CSRF cookie and
  token, Origin and Host as a browser at `http://localhost:<port>`, and one
  page's sign-up form token, sent once it was older than the minimum fill
  time: every POST passes the token's signature and time checks.
- nginx: the project's template (`nginx/default.conf.template`) in the
  official image's nginx.conf (`worker_processes auto`), rendered with envsubst
  as the serving tests do (rate limits lifted: every request comes from
  127.0.0.1), one per target; upstream `web` resolved by the stand-in for
  Docker's DNS (`loopback/dns.py`).
- PostgreSQL: a throwaway cluster (`loopback/postgres.py`), {postgresql}; the
  site's role and database, reached over TCP with a password.
- gunicorn: `docker/web/gunicorn.conf.py` (preload_app), as each target ran
  it (`--print-config`):

{gunicorn}

## Site and ceiling

Medians over rounds. Ratios pair each round's phase with the other target's
phase of the same round, then take the median. Each phase also reports the
CPU time per request of each process: gunicorn (master and workers), nginx,
the whole PostgreSQL cluster and wrk. It drifts far less than req/s on a
shared machine, and shows where the difference to the ceiling is spent."""
CPU_TEXT = "\nCPU milliseconds per request, by process:\n"
OWNER = """
## The owner's paths at {rows:,} sign-ups

Loaded with `bench/loader.py` (one COPY, indexes rebuilt after): {rows:,} rows
in {copy_s:.1f} s, indexes {index_s:.1f} s, VACUUM ANALYZE {vacuum_s:.1f} s,
{total_s:.1f} s in all. Table and indexes: {table_size}. Timed with the
`{target}` target, one request after another for {owner_duration} s each.

{paths}

- CSV export, Admin action, through nginx, one fresh worker: {admin_export}
- CSV export, `manage.py export_signups --output FILE`: {command_export}
- `bootstrap` on the ready database: median {median_s:.2f} s wall over {runs}
  runs ({walls} s), Python start-up included.
- A worker's RSS: {rss_fresh_mb:.1f} MB fresh, {rss_mb:.1f} MB after
  {requests:,} requests (GET / and sign-up POSTs, alternately); master
  {master_rss_mb:.1f} MB."""
EXPORT = "{rows:,} rows, {mb:.1f} MB in {wall_s:.1f} s; peak RSS {peak_rss_mb:.0f} MB."
ROWS_TEXT = (
    "- {name}: {rows_added:,} rows added, {app_successes:,} sign-ups answered with "
    "the redirect ({match}); {cut_off} requests were still running when wrk "
    "stopped (nginx logged 499; the app finished them)."
)
LOAD_COLUMNS = ["req/s", "p50 ms", "p90 ms", "p99 ms", "errors", "app CPU ms/req"]


def latency(item):
    return [fmt(item[key]) for key in ("p50_ms", "p90_ms", "p99_ms")]


def load_cells(item):
    """The LOAD_COLUMNS of a phase or of a summary entry."""
    cpu = fmt(item["app_cpu_ms"], 3)
    return [fmt(item["rps"], 0), *latency(item), item["errors"], cpu]


def phase_row(phase):
    return [phase["round"], phase["scenario"], phase["target"], *load_cells(phase)]


def site_and_ceiling(summary):
    """Per scenario: medians and ratios, CPU by process, rows for sign-ups."""
    out = []
    for scenario, entries in summary.items():
        others = dict.fromkeys(o for entry in entries.values() for o in entry["vs"])
        header = ["Target", *LOAD_COLUMNS]
        header += [f"{title} ÷ {o}" for o in others for title in RATIOS.values()]
        rows, cpu_rows = [], []
        for name, entry in entries.items():
            ratios = [entry["vs"].get(o, {}).get(key) for o in others for key in RATIOS]
            rows.append([name, *load_cells(entry), *map(fmt, ratios)])
            cpu = [entry[key] for key in CPU_KEYS]
            cpu.append(sum(part or 0 for part in cpu))
            cpu_rows.append([name, *(fmt(part, 3) for part in cpu)])
        out += [f"\n### {SCENARIOS[scenario]}\n", table(header, rows), CPU_TEXT]
        out.append(table(["Target", *CPU_PARTS, "total"], cpu_rows))
        if scenario == "post":
            match = {True: "equal", False: "NOT EQUAL"}
            out += [""] + [
                ROWS_TEXT.format(name=name, match=match[entry["rows_match"]], **entry)
                for name, entry in entries.items()
            ]
    return "\n".join(out)


def targets(results):
    """The Targets section: every target of the issue, met or not."""
    rows = [[*check[:3], "yes" if check[3] else "**no**"] for check in checks(results)]
    return "## Targets\n\n" + table(["Target", "Measured", "Limit", "Met"], rows)


def owner_section(owner, options):
    paths = [
        [f"`{item['path']}`", item["requests"], *latency(item), item["errors"]]
        for item in (owner[key] for key in OWNER_PATHS)
    ]
    figures = options | owner["load"] | owner | owner["bootstrap"]
    figures |= owner["worker_memory"]
    figures["walls"] = ", ".join(f"{wall:.2f}" for wall in owner["bootstrap"]["wall_s"])
    for key in ("admin_export", "command_export"):
        figures[key] = EXPORT.format(mb=owner[key]["bytes"] / 1e6, **owner[key])
    header = ["Path", "requests", "p50 ms", "p90 ms", "p99 ms", "errors"]
    return OWNER.format_map(figures | {"paths": table(header, paths)})


def markdown(results):
    """The page of a run's RESULTS."""
    start, end = results["load_average"]
    computer = [
        *results["machine"].items(),
        ["Load average (1, 5, 15 min)", f"{start} at the start, {end} at the end"],
        *results["versions"].items(),
    ]
    gunicorn = [
        [target["name"], target["describe"], *target["gunicorn"].values()]
        for target in results["targets"]
    ]
    figures = results["options"] | results | {"minutes": results["wall_s"] / 60}
    figures["machine"] = table(["", ""], computer, text_columns=2)
    figures["postgresql"] = ", ".join(
        f"{k}={v}" for k, v in results["postgresql"].items()
    )
    header = ["Target", "App and overrides", *GUNICORN_KEYS]
    figures["gunicorn"] = table(header, gunicorn, text_columns=2)
    page = [
        TOP.format_map(figures),
        site_and_ceiling(results["summary"]),
        "\n### Every phase\n",
        table(
            ["Round", "Scenario", "Target", *LOAD_COLUMNS],
            [phase_row(phase) for phase in results["phases"]],
            text_columns=3,
        ),
    ]
    if results.get("owner"):
        page.append(owner_section(results["owner"], results["options"]))
    page += ["", targets(results)]
    if results["notes"]:
        page += ["\n## Notes\n", *(f"- {note}" for note in results["notes"])]
    return "\n".join(page) + "\n"


if __name__ == "__main__":
    run, output = (Path(argument) for argument in sys.argv[1:])
    output.write_text(markdown(json.loads(run.read_text())))

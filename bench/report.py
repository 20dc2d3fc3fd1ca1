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
SUMS = (
    "requests",
    "errors",
    "cut_off",
    "rows_added",
    "app_successes",
    "mails_queued",
    "mails_expected",
)
# The figures compared with another target's in the same round: their titles.
RATIOS = {"rps": "req/s", "p99_ms": "p99", "app_cpu_ms": "CPU"}
ROWS_CHECK = "Rows added = sign-ups answered with the redirect"
MAILS_CHECK = "Mails queued = rows added"
# The mailer's targets.
MAILS_PER_S = 200
LATENCY_P95_S = 2
OWNER_PATHS = ("admin_list", "admin_search_email", "admin_search_name", "readyz")
# The owner's paths' targets: result, figure, limit, unit, title.
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
            entry["mails_match"] = all(
                p.get("mails_queued") == p.get("mails_expected") for p in mine
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


def load_checks(results, scenario, name, title):
    """The load targets of SCENARIO for target NAME, as rows of checks()."""
    entry = results["summary"].get(scenario, {}).get(name)
    ratios = entry and entry["vs"].get(results["ceiling"])
    if not ratios or ratios["rps"] is None:
        return []
    rps, p99, errors = ratios["rps"], ratios["p99_ms"], entry["errors"]
    rows = [
        (f"{title}: req/s over the ceiling's", f"{rps:.2f}", "≥ 0.40", rps >= 0.4),
        (f"{title}: p99 over the ceiling's", f"{p99:.2f}x", "≤ 3x", p99 <= 3),
        (f"{title}: errors", errors, 0, errors == 0),
    ]
    if scenario == "post":
        added = f"{entry['rows_added']:,} = {entry['app_successes']:,}"
        check = ROWS_CHECK if name == results["site"] else f"{title}: {ROWS_CHECK}"
        rows.append((check, added, "equal", entry["rows_match"]))
    if scenario == "post" and name == results.get("confirming"):
        queued = f"{entry.get('mails_queued', 0):,} = {entry['rows_added']:,}"
        match = entry.get("mails_match", False)
        rows.append((f"{title}: {MAILS_CHECK}", queued, "equal", match))
    return rows


def mail_checks(mail):
    """The mailer's targets, as rows of checks()."""
    backlog, steady = mail["backlog"], mail["steady"]
    rate, p95 = backlog["mails_per_s"], steady["latency_s_p95"]
    sent = f"{backlog['accepted']:,} of {backlog['mails']:,}"
    backlog_ok = backlog["accepted"] == backlog["mails"] and not (
        backlog["missing"] or backlog["twice"]
    )
    steady_sent = f"{steady['accepted']:,} of {steady['stored']:,}"
    steady_ok = steady["accepted"] == steady["stored"] == steady["signups"] and not (
        steady["missing"] or steady["twice"] or steady["errors"]
    )
    at = f"at {steady['rate']} sign-ups/s"
    return [
        (
            f"Mailer, a backlog of {backlog['mails']:,} mails: mails/s",
            f"{rate:,.0f}",
            f"≥ {MAILS_PER_S}",
            rate >= MAILS_PER_S,
        ),
        ("Mailer, the backlog accepted by SMTP, each once", sent, "all", backlog_ok),
        (
            f"Sign-up to its mail accepted by SMTP {at}, p95",
            "-" if p95 is None else f"{p95:.2f} s",
            f"< {LATENCY_P95_S} s",
            p95 is not None and p95 < LATENCY_P95_S,
        ),
        (f"Sign-ups {at}: mails accepted, each once", steady_sent, "all", steady_ok),
    ]


def checks(results):
    """[(what, measured, limit, met)] for every target."""
    site, confirming = results["site"], results.get("confirming")
    rows = []
    for scenario, title in SCENARIOS.items():
        rows += load_checks(results, scenario, site, title)
    if confirming and confirming != site:
        title = f"{SCENARIOS['post']} with double opt-in"
        rows += load_checks(results, "post", confirming, title)
    if results.get("mail"):
        rows += mail_checks(results["mail"])
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
MAIL = """
## Mail

One mailer, `manage.py deliver_mail` as the `mailer` service runs it, with
the `{target}` target's settings, sending over one kept-open SMTP connection
to a mail server on loopback (`bench/smtp_sink.py`, aiosmtpd) that accepts
every mail and notes the time. No mailer runs during the load phases above:
the `{target}` target's sign-ups only queue their mails there, and those are
discarded before the mailer starts.

- A backlog: {mails:,} confirmation mails queued in one transaction (each
  sign-up {spacing_ms} ms older than the next, so each mail has its own
  `due_at`, as the site queues them) while the mailer idles. Mails per second
  count from that commit to the last mail accepted, so they include up to one
  of the mailer's idle polls (1 s); from the first mail accepted to the last
  it sent {sending}. CPU is what each process used over the same time, per
  mail and as a share of one core.

{backlog}

- Steady: sign-up POSTs through nginx to `{target}` at {rate} a second for
  {duration_s} s, each sent at its time whether or not the one before was
  answered, while the mailer runs. Latency is from the sign-up's
  `signed_up_at` (PostgreSQL's clock, on this machine) to the mail server's
  acceptance of its mail; an idle mailer looks for new mail once a second.

{steady}"""
EXPORT = "{rows:,} rows, {mb:.1f} MB in {wall_s:.1f} s; peak RSS {peak_rss_mb:.0f} MB."
ROWS_TEXT = (
    "- {name}: {rows_added:,} rows added, {app_successes:,} sign-ups answered with "
    "the redirect ({match}); {cut_off} requests were still running when wrk "
    "stopped (nginx logged 499; the app finished them)."
)
MAILS_TEXT = " {mails_queued:,} confirmation mails queued ({mails_match})."
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
            out.append("")
            for name, entry in entries.items():
                text = ROWS_TEXT.format(
                    name=name, match=match[entry["rows_match"]], **entry
                )
                if entry.get("mails_queued"):
                    text += MAILS_TEXT.format(
                        mails_queued=entry["mails_queued"],
                        mails_match=match[entry["mails_match"]],
                    )
                out.append(text)
    return "\n".join(out)


def targets(results):
    """The Targets section: every target, met or not."""
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


def mail_section(mail):
    backlog, steady = mail["backlog"], mail["steady"]
    parts = ("mailer", "postgres", "smtp")
    header = ["mails", "accepted", "wall s", "mails/s", "first mail after s"]
    header += [f"{part} CPU ms/mail" for part in parts]
    header += [f"{part} CPU share" for part in parts]
    backlog_row = [
        f"{backlog['mails']:,}",
        f"{backlog['accepted']:,}",
        fmt(backlog.get("wall_s")),
        fmt(backlog["mails_per_s"], 0),
        fmt(backlog.get("first_after_s")),
        *(fmt(backlog.get(f"{part}_cpu_ms"), 3) for part in parts),
        *(fmt(backlog.get(f"{part}_cpu_share")) for part in parts),
    ]
    steady_header = ["sign-ups", "answered 302", "POST p50 ms", "POST p95 ms"]
    steady_header += ["mail p50 s", "mail p95 s", "mail p99 s", "mail max s"]
    steady_header += ["mails accepted", "missing", "twice", "mailer CPU share"]
    steady_row = [
        f"{steady['signups']:,}",
        f"{steady['statuses'].get('302', 0):,}",
        fmt(steady["post_ms_p50"]),
        fmt(steady["post_ms_p95"]),
        *(fmt(steady[f"latency_s_{q}"]) for q in ("p50", "p95", "p99", "max")),
        f"{steady['accepted']:,}",
        steady["missing"],
        steady["twice"],
        fmt(steady["mailer_cpu_share"]),
    ]
    sending = backlog.get("sending_per_s")
    figures = mail["settings"] | backlog | steady | {"target": mail["target"]}
    figures["sending"] = "-" if sending is None else f"{sending:,.0f} mails/s"
    figures["backlog"] = table(header, [backlog_row], text_columns=0)
    figures["steady"] = table(steady_header, [steady_row], text_columns=0)
    return MAIL.format_map(figures)


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
    if results.get("mail"):
        page.append(mail_section(results["mail"]))
    if results.get("owner"):
        page.append(owner_section(results["owner"], results["options"]))
    page += ["", targets(results)]
    if results["notes"]:
        page += ["\n## Notes\n", *(f"- {note}" for note in results["notes"])]
    return "\n".join(page) + "\n"


if __name__ == "__main__":
    run, output = (Path(argument) for argument in sys.argv[1:])
    output.write_text(markdown(json.loads(run.read_text())))

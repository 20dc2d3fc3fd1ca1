"""
The README keeps its promises: its sections in the order a newcomer needs
them, its links and pictures there, the pictures the ones the browser tests
take, and every command it documents backed by something in the repository.
"""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# What a person who has never seen the project reads, top to bottom.
SECTION_ORDER = [
    "Quick start",
    "What you get",
    "Configuration",
    "Security",
    "Run the tests",
    "Scaling",
    "Deploy behind TLS",
    "Beyond one machine",
    "Backup and restore",
    "Troubleshooting",
    "Architecture",
]


def headings(level):
    marker = "#" * level + " "
    return [
        line[len(marker) :].strip()
        for line in README.splitlines()
        if line.startswith(marker)
    ]


def slug(heading):
    """GitHub's anchor for a heading."""
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def test_sections_come_in_the_order_a_newcomer_needs_them():
    sections = headings(2)

    assert [name for name in sections if name in SECTION_ORDER] == SECTION_ORDER


def test_the_picture_of_the_services_is_a_mermaid_diagram_of_all_of_them():
    architecture = README.split("## Architecture", 1)[1]
    diagram = re.search(r"```mermaid\n(.*?)```", architecture, re.S).group(1)

    for name in ("nginx", "web", "db", "frontend", "backend", "pgdata", "secrets"):
        assert name in diagram
    assert "volume: backups" in diagram


def test_links_within_the_readme_lead_to_a_heading():
    anchors = {slug(text) for level in (2, 3) for text in headings(level)}

    for target in re.findall(r"\]\(#([^)]+)\)", README):
        assert target in anchors, target


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


def test_documented_commands_exist():
    conftest = (ROOT / "tests" / "browser" / "conftest.py").read_text()
    compose = (ROOT / "compose.yaml").read_text()

    assert ".venv/bin/pytest tests/browser --update-screenshots" in README
    assert '"--update-screenshots"' in conftest
    assert "docker compose -f compose.yaml -f compose.dev.yaml up --build" in README
    assert (ROOT / "compose.dev.yaml").is_file()
    for command in (
        "docker compose run --rm backup",
        "docker compose run --rm backup list",
        "docker compose run --rm restore",
    ):
        assert command in README
    assert "\n  backup:\n" in compose
    assert "\n  restore:\n" in compose
    assert "docker stack deploy -c deploy/swarm/stack.yaml signup" in README
    assert (ROOT / "deploy" / "swarm" / "stack.yaml").is_file()
    assert "docker compose build\ndocker compose push" in README
    assert "python manage.py export_signups" in README
    assert (
        ROOT / "accounts" / "management" / "commands" / "export_signups.py"
    ).is_file()


def variables_the_stack_reads():
    """Names read from .env or the environment by the stack's own files."""
    patterns = {
        "compose.yaml": r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)",
        "compose.dev.yaml": r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)",
        "deploy/swarm/stack.yaml": r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)",
        "signup_site/configuration.py": (
            r"\.(?:string|boolean|integer|secret|list|choice)\(\s*\"([A-Z][A-Z0-9_]*)\""
        ),
        "docker/web/gunicorn.conf.py": (
            r"\.(?:string|integer|list|choice)\(\s*\"([A-Z][A-Z0-9_]*)\""
        ),
        "docker/web/start.sh": r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)",
    }
    names = set()
    for name, pattern in patterns.items():
        names |= set(re.findall(pattern, (ROOT / name).read_text()))
    return names


def test_every_variable_the_stack_reads_is_documented_in_env_example():
    documented = set(
        re.findall(r"\b([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text())
    )
    read = variables_the_stack_reads()

    assert {"DJANGO_SECRET_KEY", "WEB_CONCURRENCY", "SIGNUP_PORT"} <= read
    assert sorted(read - documented) == []

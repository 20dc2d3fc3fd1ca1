"""The checks a reviewer would run by hand, run by the test command instead."""

import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.commands import TEST_SECRET_KEY, manage, site_environment

ROOT = Path(__file__).resolve().parents[1]
TOOLS = Path(sys.executable).parent


def tool(name):
    path = TOOLS / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    assert found, f"{name} is not installed: install the test dependency group"
    return found


def run(*command):
    return subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_ruff_lint_is_clean():
    result = run(tool("ruff"), "check", "--output-format", "concise", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_clean():
    result = run(tool("ruff"), "format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def shell_scripts():
    tracked = run("git", "ls-files").stdout.split()
    scripts = []
    for name in tracked:
        path = ROOT / name
        if not path.is_file():
            continue
        if name.endswith(".sh") or path.read_bytes()[:32].startswith(
            (b"#!/bin/sh", b"#!/bin/bash", b"#!/usr/bin/env bash", b"#!/usr/bin/env sh")
        ):
            scripts.append(name)
    return scripts


def test_shell_scripts_pass_shellcheck():
    scripts = shell_scripts()
    assert ".ci/run" in scripts
    result = run(tool("shellcheck"), *scripts)
    assert result.returncode == 0, result.stdout + result.stderr


def test_django_system_checks_are_clean():
    result = manage(
        "check",
        "--fail-level",
        "WARNING",
        env=site_environment(DJANGO_SECRET_KEY=TEST_SECRET_KEY, POSTGRES_PASSWORD="x"),
    )
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def test_models_and_migrations_agree():
    result = manage(
        "makemigrations",
        "--check",
        "--dry-run",
        env=site_environment(
            DJANGO_SECRET_KEY=TEST_SECRET_KEY,
            POSTGRES_HOST="127.0.0.1",
            POSTGRES_PASSWORD="",
            POSTGRES_USER="postgres",
        ),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No changes detected" in result.stdout

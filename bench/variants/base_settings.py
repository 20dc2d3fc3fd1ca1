"""Helpers for the variant settings modules: the bench's settings, edited."""

from pathlib import Path

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"

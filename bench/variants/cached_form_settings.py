"""The site with the blank form's fields rendered once per process and kept
in the process's memory (Django's {% cache %} on the default in-memory
cache): only a bound form, with what was typed and its errors, is rendered
each time. The page itself, with its CSRF token, is never cached."""

from pathlib import Path

from bench.site_settings import *  # noqa: F403
from bench.site_settings import TEMPLATES

CACHED = Path(__file__).resolve().parent / "cached_templates"
TEMPLATES = [{**TEMPLATES[0], "DIRS": [CACHED, *TEMPLATES[0]["DIRS"]]}]

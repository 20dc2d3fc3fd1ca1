"""
Settings for the test suite: the real settings, fed a test environment.

The database is the PostgreSQL every development and CI machine of this
project runs on 127.0.0.1:5432 (trust authentication); TEST_POSTGRES_* point
the suite elsewhere. Values already in the environment are not overridden,
except that tests never run with debug on.
"""

import os

TEST_ENVIRONMENT = {
    "DJANGO_SECRET_KEY": "test-only-secret-key-" + "x" * 40,
    "DJANGO_DEBUG": "false",
    "POSTGRES_HOST": os.environ.get("TEST_POSTGRES_HOST", "127.0.0.1"),
    "POSTGRES_PORT": os.environ.get("TEST_POSTGRES_PORT", "5432"),
    "POSTGRES_USER": os.environ.get("TEST_POSTGRES_USER", "postgres"),
    "POSTGRES_PASSWORD": os.environ.get("TEST_POSTGRES_PASSWORD", ""),
    "POSTGRES_DB": os.environ.get("TEST_POSTGRES_DB", "signup"),
}
for _name in ("DATABASE_URL", "DJANGO_SECRET_KEY_FILE", "POSTGRES_PASSWORD_FILE"):
    os.environ.pop(_name, None)
# No test mails the caller's mail server; the mail tests bring their own.
for _name in ("EMAIL_URL", "EMAIL_URL_FILE", "DEFAULT_FROM_EMAIL"):
    os.environ.pop(_name, None)
for _name in [n for n in os.environ if n.startswith("DJANGO_SUPERUSER_")]:
    os.environ.pop(_name)
os.environ.update(TEST_ENVIRONMENT)

from signup_site.settings import *  # noqa: E402, F403

# Hashing admin passwords at full strength would dominate the suite's time.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Tests render pages without running collectstatic first.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

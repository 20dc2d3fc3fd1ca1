"""
Settings for the test suite: the production settings, read from the
environment tests/conftest.py sets before it loads them, with two changes for
speed. Importing this module changes nothing.
"""

from signup_site.settings import *  # noqa: F403

# Hashing admin passwords at full strength would dominate the suite's time.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Tests render pages without running collectstatic first.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

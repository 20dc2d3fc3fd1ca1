"""
Read the site's configuration from the environment, all at once.

Every setting that depends on the deployment comes through here, so a missing
or malformed variable is found before Django starts, together with every other
problem, in one message that says how to fix each. Nothing here has an insecure
fallback: there is no default secret key and no default database password.
"""

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})
MIN_SECRET_KEY_LENGTH = 50
MIN_SECRET_KEY_UNIQUE = 5
DEFAULT_ADMIN_URL = "admin/"
# Segments of letters, digits and - . _ ~, each ending in a slash: what both
# Django's URL patterns and nginx's rate-limit key take literally.
ADMIN_URL_PATTERN = re.compile(r"(?:[A-Za-z0-9._~-]+/)+")
GENERATE_KEY_HINT = (
    "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(50))'"
)


class ConfigurationError(ImproperlyConfigured):
    """The environment does not describe a runnable site; the message says why."""

    def __init__(self, problems):
        self.problems = list(problems)
        lines = [
            f"The site is not configured correctly ({len(self.problems)} "
            f"problem{'s' if len(self.problems) != 1 else ''}):"
        ]
        lines += [f"  - {problem}" for problem in self.problems]
        lines.append(
            "Set these variables in the environment or in .env "
            "(.env.example documents each one)."
        )
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class Superuser:
    username: str
    email: str
    password: str


@dataclass(frozen=True)
class Configuration:
    secret_key: str
    debug: bool
    public_url: str
    public_scheme: str
    allowed_hosts: list[str]
    csrf_trusted_origins: list[str]
    database: dict
    superuser: Superuser | None
    hsts_seconds: int
    hsts_include_subdomains: bool
    hsts_preload: bool
    conn_max_age: int
    admin_url: str

    @property
    def https(self):
        return self.public_scheme == "https"


class EnvironmentReader:
    """Reads variables and collects problems instead of stopping at the first.

    gunicorn.conf.py reads its own variables through it too, by the same rules.
    """

    def __init__(self, environ_):
        self.env = environ.Env()
        # django-environ reads from the mapping it is given; a copy keeps the
        # reader independent of later changes to os.environ.
        self.env.ENVIRON = dict(environ_)
        self.problems = []

    def raw(self, name):
        return self.env.ENVIRON.get(name)

    def string(self, name, default=None):
        value = self.raw(name)
        return default if value is None else value

    def boolean(self, name, default):
        # Not env.bool: it reads any word it does not know as False, so a
        # typo such as "ture" would silently turn a setting off.
        value = self.raw(name)
        if value is None or value.strip() == "":
            return default
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        self.problems.append(
            f"{name}={value!r} is not a boolean: use one of "
            "1/true/yes/on or 0/false/no/off."
        )
        return default

    def integer(self, name, default, minimum=0):
        value = self.raw(name)
        if value is None or value.strip() == "":
            return default
        try:
            number = self.env.int(name)
        except (ValueError, ImproperlyConfigured):  # the latter: a "$OTHER" unset
            number = None
        if number is None or number < minimum:
            self.problems.append(
                f"{name}={value!r} is not a whole number of at least {minimum}."
            )
            return default
        return number

    def list(self, name, default=()):
        """NAME's comma-separated items, blanks dropped; DEFAULT if there are none."""
        items = [
            item.strip() for item in self.env.list(name, default=[]) if item.strip()
        ]
        return items or list(default)

    def choice(self, name, default, choices):
        value = self.string(name, "").strip().lower() or default
        if value not in choices:
            self.problems.append(
                f"{name}={value!r} is not one of {', '.join(choices)}."
            )
            return default
        return value

    def secret(self, name, *, required, hint, generated=None):
        """
        The value of NAME, or the contents of the file named by NAME_FILE, or
        else of the file GENERATED in SIGNUP_SECRETS_DIR (where the Compose
        stack keeps the secrets it made on first start). Empty means unset, as
        it does for the official postgres image.
        """
        file_name = f"{name}_FILE"
        value, path = self.raw(name) or None, self.raw(file_name) or None
        if value is not None and path is not None:
            self.problems.append(
                f"{name} and {file_name} are both set: set only one of them."
            )
            return None
        if value is not None:
            return value
        if path is None and generated and self.raw("SIGNUP_SECRETS_DIR"):
            candidate = Path(self.raw("SIGNUP_SECRETS_DIR")) / generated
            if candidate.is_file():
                path, file_name = str(candidate), "SIGNUP_SECRETS_DIR"
        if path is not None:
            try:
                # Like the official postgres image, drop trailing newlines an
                # editor or `echo` adds to a secret file.
                return Path(path).read_text(encoding="utf-8").rstrip("\r\n")
            except (OSError, UnicodeDecodeError) as exc:
                reason = getattr(exc, "strerror", None) or str(exc)
                self.problems.append(f"{file_name}={path!r} cannot be read ({reason}).")
                return None
        if required:
            self.problems.append(f"{name} (or {file_name}) is not set: {hint}.")
        return None


def _public_url(reader):
    name = "DJANGO_PUBLIC_URL"
    value = reader.string(name, "http://localhost:8080").strip()
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        parts, port = None, None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username
        or parts.password
    ):
        reader.problems.append(
            f"{name}={value!r} is not a site address: use scheme, host and "
            "optional port only, e.g. http://localhost:8080 or https://signup.example.com."
        )
        return "http://localhost:8080", "http", "localhost"
    origin = f"{parts.scheme}://{parts.hostname}"
    if port is not None:
        origin += f":{port}"
    return origin, parts.scheme, parts.hostname


def _database(reader):
    url = reader.string("DATABASE_URL")
    if url:
        try:
            config = reader.env.db_url_config(url)
        except Exception:  # django-environ raises several types
            # The exception's text may quote the URL, password and all.
            reader.problems.append(
                "DATABASE_URL cannot be parsed: use "
                "postgres://user:password@host:port/name, with special characters "
                "in the password percent-encoded (or use the POSTGRES_* variables)."
            )
            return None
        if config.get("ENGINE") != "django.db.backends.postgresql":
            reader.problems.append(
                "DATABASE_URL must point to PostgreSQL (postgres://user:password@host:port/name)."
            )
            return None
        return config

    user = reader.secret("POSTGRES_USER", required=False, hint="") or "postgres"
    # Optional: a server with trust or peer authentication needs none, and a
    # wrong or missing one is reported by `bootstrap` in plain words.
    password = reader.secret(
        "POSTGRES_PASSWORD", required=False, hint="", generated="postgres_password"
    )
    name = reader.secret("POSTGRES_DB", required=False, hint="") or user
    port = reader.integer("POSTGRES_PORT", 5432, minimum=1)
    if port > 65535:
        reader.problems.append(f"POSTGRES_PORT={port} is not a TCP port (1-65535).")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": reader.string("POSTGRES_HOST", "db").strip() or "db",
        "PORT": port,
        "USER": user,
        "PASSWORD": password or "",
        "NAME": name,
    }


def _admin_url(reader):
    """The admin's path below the site's root, such as admin/ (Django's
    ADMIN_URL; nginx's login rate limit reads the same variable)."""
    name = "DJANGO_ADMIN_URL"
    value = reader.string(name, "").strip() or DEFAULT_ADMIN_URL
    segments = value.split("/")[:-1]
    if (
        not ADMIN_URL_PATTERN.fullmatch(value)
        or any(segment in (".", "..") for segment in segments)
        or segments[0] == "static"
    ):
        reader.problems.append(
            f"{name}={value!r} is not an admin path: use segments of letters, "
            "digits and - . _ ~, each ending with a slash and none starting "
            "with one, e.g. admin/ or office/admin/ (not under static/)."
        )
        return DEFAULT_ADMIN_URL
    return value


def _superuser(reader):
    username = reader.string("DJANGO_SUPERUSER_USERNAME", "").strip()
    email = reader.string("DJANGO_SUPERUSER_EMAIL", "").strip()
    password = reader.string("DJANGO_SUPERUSER_PASSWORD", "")
    if not (username or email or password):
        return None
    missing = [
        name
        for name, value in (
            ("DJANGO_SUPERUSER_USERNAME", username),
            ("DJANGO_SUPERUSER_PASSWORD", password),
        )
        if not value
    ]
    if missing:
        reader.problems.append(
            f"{' and '.join(missing)} must be set too when an admin account is "
            "to be created from the environment (or unset all DJANGO_SUPERUSER_* "
            "variables)."
        )
        return None
    return Superuser(username=username, email=email, password=password)


def load(environ_=None):
    """Build the Configuration from ENVIRON_ (default: os.environ)."""
    reader = EnvironmentReader(os.environ if environ_ is None else environ_)

    secret_key = reader.secret(
        "DJANGO_SECRET_KEY",
        required=True,
        hint=GENERATE_KEY_HINT,
        generated="django_secret_key",
    )
    if secret_key is not None and (
        len(secret_key) < MIN_SECRET_KEY_LENGTH
        or len(set(secret_key)) < MIN_SECRET_KEY_UNIQUE
        or secret_key.startswith("django-insecure")
    ):
        # The same bar as Django's own deployment check (security.W009).
        reader.problems.append(
            f"DJANGO_SECRET_KEY is not random enough ({len(secret_key)} characters, "
            f"{len(set(secret_key))} different); use at least "
            f"{MIN_SECRET_KEY_LENGTH} random characters: {GENERATE_KEY_HINT}."
        )
    debug = reader.boolean("DJANGO_DEBUG", False)
    origin, scheme, hostname = _public_url(reader)
    extra_hosts = reader.list("DJANGO_ALLOWED_HOSTS")
    database = _database(reader)
    superuser = _superuser(reader)
    hsts_seconds = reader.integer("DJANGO_HSTS_SECONDS", 3600)
    hsts_include_subdomains = reader.boolean("DJANGO_HSTS_INCLUDE_SUBDOMAINS", True)
    hsts_preload = reader.boolean("DJANGO_HSTS_PRELOAD", True)
    conn_max_age = reader.integer("DJANGO_CONN_MAX_AGE", 60)
    admin_url = _admin_url(reader)
    # Short: a database that does not answer should cost a visitor a couple
    # of seconds and a 503 page, not a hang until a proxy gives up.
    connect_timeout = reader.integer("POSTGRES_CONNECT_TIMEOUT", 3, minimum=2)

    if reader.problems:
        raise ConfigurationError(reader.problems)

    database.setdefault("OPTIONS", {}).setdefault("connect_timeout", connect_timeout)
    # "localhost" is also reached as 127.0.0.1 and [::1]; accept all three.
    loopback = ["127.0.0.1", "[::1]"] if hostname == "localhost" else []
    allowed_hosts = list(dict.fromkeys([hostname, *loopback, *extra_hosts]))
    return Configuration(
        secret_key=secret_key,
        debug=debug,
        public_url=origin,
        public_scheme=scheme,
        allowed_hosts=allowed_hosts,
        csrf_trusted_origins=[origin],
        database=database,
        superuser=superuser,
        hsts_seconds=hsts_seconds,
        hsts_include_subdomains=hsts_include_subdomains,
        hsts_preload=hsts_preload,
        conn_max_age=conn_max_age,
        admin_url=admin_url,
    )

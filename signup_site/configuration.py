"""
Read the site's configuration from the environment, all at once: a missing or
malformed variable stops start-up before Django starts, in one message that
lists every problem and how to fix each. Nothing here has an insecure fallback:
there is no default secret key and no default database password.
"""

import os
import re
from email.utils import parseaddr
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

BOOLEANS = dict.fromkeys(("1", "true", "yes", "on"), True) | dict.fromkeys(
    ("0", "false", "no", "off"), False
)
DEFAULT_PUBLIC_URL = "http://localhost:8080"
# scheme://host[:port][/], the host a name, an IPv4 or a bracketed IPv6 address
# by the rule Django checks a request's Host against (host_validation_re).
PUBLIC_URL_PATTERN = re.compile(
    r"(?P<origin>https?://(?P<host>\[[0-9a-f]*:[0-9a-f.:]+\]|[a-z0-9][a-z0-9.-]*)"
    r"(?::(?P<port>[1-9][0-9]{0,4}))?)/?"
)
POSTGRESQL = "django.db.backends.postgresql"
ENGINE = "signup_site.postgresql"
# django-environ's mail schemes; smtps:// means STARTTLS there, as smtp+tls://.
SCHEMES = environ.Env.EMAIL_SCHEMES
DEFAULT_ADMIN_URL = "admin/"
# Segments of letters, digits and - . _ ~, each ending in a slash, none of them
# . or .., and not under static/ (nginx's): what both Django's URL patterns and
# nginx's rate-limit key take literally.
ADMIN_URL_PATTERN = re.compile(r"(?!static/)(?:(?!\.\.?/)[A-Za-z0-9._~-]+/)+")
# The least time from drawing the sign-up form to sending it back that does
# not look automated (docs/security.md has the measurements behind it).
DEFAULT_MIN_FILL = 1.0
# How long a visitor has to confirm a sign-up, and how long an unconfirmed
# one is kept (accounts.mail, purge_signups).
DEFAULT_CONFIRM_DAYS = 7
DEFAULT_PURGE_DAYS = 30
# Seconds an SMTP exchange may take before the worker gives up on it; Django's
# default is to wait forever.
DEFAULT_EMAIL_TIMEOUT = 10.0
GENERATE_KEY_HINT = (
    "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(50))'"
)


class ConfigurationError(ImproperlyConfigured):
    """The environment does not describe a runnable site; the message says why."""

    def __init__(self, problems):
        self.problems = list(problems)
        count = len(self.problems)
        lines = [
            f"The site is not configured correctly ({count} "
            f"problem{'s' if count != 1 else ''}):",
            *(f"  - {problem}" for problem in self.problems),
            "Set these variables in the environment or in .env "
            "(.env.example documents each one).",
        ]
        super().__init__("\n".join(lines))


class EnvironmentReader:
    """Reads variables and collects problems instead of stopping at the first;
    empty counts as unset. Why this reader and django-environ only for the
    URLs: docs/configuration.md#how-the-variables-are-read."""

    def __init__(self, environ_):
        # A copy, so later changes to os.environ do not reach the reader.
        self.environ = dict(environ_)
        self.problems = []

    def raw(self, name):
        """NAME's value exactly as set, or None."""
        return self.environ.get(name) or None

    def string(self, name, default=None):
        """NAME's value without surrounding blanks, or DEFAULT."""
        return (self.raw(name) or "").strip() or default

    def list(self, name, default=()):
        """NAME's comma-separated items, blanks dropped; DEFAULT if there are none."""
        items = [item.strip() for item in self.string(name, "").split(",")]
        return [item for item in items if item] or list(default)

    def boolean(self, name, default):
        # Strict, unlike django-environ's env.bool (docs/configuration.md).
        word = self.string(name, "").lower()
        if not word or word in BOOLEANS:
            return BOOLEANS.get(word, default)
        expected = "a boolean: use one of 1/true/yes/on or 0/false/no/off"
        return self._problem(name, default, expected)

    def integer(self, name, default, minimum=0):
        value = self.string(name)
        if value is None:
            return default
        # Digits only, the rule nginx/hsts.envsh applies too.
        if re.fullmatch("[0-9]+", value) and int(value) >= minimum:
            return int(value)
        return self._problem(name, default, f"a whole number of at least {minimum}")

    def seconds(self, name, default):
        """NAME as a number of seconds, whole or with a decimal fraction."""
        value = self.string(name)
        if value is None:
            return default
        if re.fullmatch(r"[0-9]+(\.[0-9]+)?", value):
            return float(value)
        return self._problem(name, default, "a number of seconds, such as 2 or 1.5")

    def choice(self, name, default, choices):
        value = self.string(name, default).lower()
        if value in choices:
            return value
        return self._problem(name, default, f"one of {', '.join(choices)}")

    def _problem(self, name, default, expected):
        self.problems.append(f"{name}={self.raw(name)!r} is not {expected}.")
        return default

    def secret(self, name, generated=None, hint=None):
        """NAME's value, or the contents of the file NAME_FILE names, or else
        of GENERATED in SIGNUP_SECRETS_DIR (where the Compose stack keeps the
        secrets it made). With a HINT it is required; the HINT says how to
        make one."""
        file_name = f"{name}_FILE"
        value, path = self.raw(name), self.raw(file_name)
        if value is not None and path is not None:
            self.problems.append(
                f"{name} and {file_name} are both set: set only one of them."
            )
            return None
        if value is not None:
            return value
        directory = self.raw("SIGNUP_SECRETS_DIR")
        candidate = Path(directory, generated) if directory and generated else None
        if path is None and candidate and candidate.is_file():
            path, file_name = str(candidate), "SIGNUP_SECRETS_DIR"
        if path is None:
            if hint:
                self.problems.append(f"{name} (or {file_name}) is not set: {hint}.")
            return None
        try:
            # Like the official postgres image, drop the trailing newlines an
            # editor or `echo` adds to a secret file.
            return Path(path).read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            self.problems.append(f"{file_name}={path!r} cannot be read ({reason}).")
            return None


def _secret_key(env):
    key = env.secret("DJANGO_SECRET_KEY", "django_secret_key", GENERATE_KEY_HINT)
    # The same bar as Django's own deployment check (security.W009).
    if key is not None and (
        len(key) < 50 or len(set(key)) < 5 or key.startswith("django-insecure")
    ):
        env.problems.append(
            f"DJANGO_SECRET_KEY is not random enough ({len(key)} characters, "
            f"{len(set(key))} different); use at least 50 random characters: "
            f"{GENERATE_KEY_HINT}."
        )
    return key


def _secret_key_fallbacks(env):
    """Earlier secret keys, still accepted for signatures (confirmation and
    unsubscribe links, form tokens) after a rotation: comma-separated, or one
    per line in the file DJANGO_SECRET_KEY_FALLBACKS_FILE names."""
    value = env.secret("DJANGO_SECRET_KEY_FALLBACKS") or ""
    return [key.strip() for key in re.split(r"[,\n]", value) if key.strip()]


def _mail(env):
    """Django's EMAIL_* settings from EMAIL_URL (django-environ's reader);
    None when no mail is configured, empty when it is set but unusable."""
    url = env.secret("EMAIL_URL")
    if url is None:
        return None
    scheme = urlsplit(url).scheme
    try:
        # Not for an unknown scheme: django-environ's message quotes it.
        mail = environ.Env.email_url_config(url) if scheme in SCHEMES else {}
    except Exception:  # a bad port is a ValueError, and there are others
        mail = {}
    # smtp:// with no host (an empty variable in it, say) would be Django's
    # default, localhost:25: not what anyone meant.
    if mail.get("EMAIL_BACKEND", "").endswith(".smtp.EmailBackend") and not (
        mail.get("EMAIL_HOST")
    ):
        mail = {}
    if not mail:
        env.problems.append(
            "EMAIL_URL is not a mail server address: use "
            "smtp://user:password@host:port (smtp+tls:// for STARTTLS, "
            "smtp+ssl:// for TLS from the start), with special characters in the "
            "password percent-encoded, or consolemail:// to print mail to the log."
        )
        return {}
    settings = {key: value for key, value in mail.items() if value not in (None, "")}
    settings.pop("OPTIONS", None)
    settings["EMAIL_TIMEOUT"] = env.seconds("EMAIL_TIMEOUT", DEFAULT_EMAIL_TIMEOUT)
    if settings["EMAIL_TIMEOUT"] == 0:
        # smtplib refuses a timeout of 0 (a socket that never waits) on every
        # mail; it does not mean "no limit".
        env.problems.append(
            f"EMAIL_TIMEOUT={env.raw('EMAIL_TIMEOUT')!r} is not a time to wait: "
            "use a number of seconds above 0, such as 10."
        )
        settings["EMAIL_TIMEOUT"] = DEFAULT_EMAIL_TIMEOUT
    sender = env.string("DEFAULT_FROM_EMAIL")
    if sender is None:
        env.problems.append(
            "DEFAULT_FROM_EMAIL is not set: mail needs a sender address, "
            "e.g. DEFAULT_FROM_EMAIL='Sign-ups <signup@example.com>'."
        )
    elif not _mail_address(sender):
        env.problems.append(
            f"DEFAULT_FROM_EMAIL={sender!r} is not a mail address: use "
            "signup@example.com or 'Sign-ups <signup@example.com>'."
        )
    settings["DEFAULT_FROM_EMAIL"] = sender
    return settings


def _mail_address(value):
    """Whether VALUE is an address, bare or with a display name."""
    _name, address = parseaddr(value)
    return "@" in address and not any(c.isspace() for c in address)


def _public_url(env):
    """DJANGO_PUBLIC_URL's origin (scheme, host, port) and host name."""
    value = env.string("DJANGO_PUBLIC_URL", DEFAULT_PUBLIC_URL)
    match = PUBLIC_URL_PATTERN.fullmatch(value.lower())
    if match and int(match["port"] or 0) <= 65535:
        return match["origin"], match["host"]
    env.problems.append(
        f"DJANGO_PUBLIC_URL={value!r} is not a site address: use scheme, host "
        "and optional port only, e.g. http://localhost:8080 or "
        "https://signup.example.com."
    )
    return DEFAULT_PUBLIC_URL, "localhost"


def _database(env):
    """DATABASES["default"], from DATABASE_URL or else the POSTGRES_* pieces."""
    if url := env.string("DATABASE_URL"):
        # The scheme first: django-environ warns of one it does not know,
        # quoting the URL, password and all, and its exceptions may too.
        try:
            postgres = environ.Env.DB_SCHEMES.get(urlsplit(url).scheme) == POSTGRESQL
            database = environ.Env.db_url_config(url, ENGINE) if postgres else {}
        except Exception:  # django-environ raises several types
            database = {}
        if not database:
            env.problems.append(
                "DATABASE_URL is not a PostgreSQL address: use "
                "postgres://user:password@host:port/name, with special characters "
                "in the password percent-encoded (or use the POSTGRES_* variables)."
            )
    else:
        user = env.secret("POSTGRES_USER") or "postgres"
        port = env.integer("POSTGRES_PORT", 5432, minimum=1)
        if port > 65535:
            env.problems.append(f"POSTGRES_PORT={port} is not a TCP port (1-65535).")
        database = {
            "ENGINE": ENGINE,
            "HOST": env.string("POSTGRES_HOST", "db"),
            "PORT": port,
            "USER": user,
            # Optional: a server with trust or peer authentication needs none,
            # and `bootstrap` reports a wrong or missing one in plain words.
            "PASSWORD": env.secret("POSTGRES_PASSWORD", "postgres_password") or "",
            "NAME": env.secret("POSTGRES_DB") or user,
        }
    # Short: a database that does not answer should cost a visitor a couple
    # of seconds and a 503 page, not a hang until a proxy gives up.
    timeout = env.integer("POSTGRES_CONNECT_TIMEOUT", 3, minimum=2)
    database.setdefault("OPTIONS", {}).setdefault("connect_timeout", timeout)
    return database


def _min_fill_seconds(env):
    seconds = env.seconds("SIGNUP_MIN_FILL_SECONDS", DEFAULT_MIN_FILL)
    # A form token is good for a day: a longer minimum would refuse them all.
    if seconds >= 3600:
        env.problems.append(
            f"SIGNUP_MIN_FILL_SECONDS={env.raw('SIGNUP_MIN_FILL_SECONDS')!r} is "
            "longer than a person needs: use fewer than 3600 seconds."
        )
        return DEFAULT_MIN_FILL
    return seconds


def _privacy_url(env):
    value = env.string("SIGNUP_PRIVACY_URL", "")
    if not value or re.fullmatch(r"(https?://|/)[^\s\"'<>]*", value):
        return value
    env.problems.append(
        f"SIGNUP_PRIVACY_URL={value!r} is not a link: use an https:// address "
        "or a path on this site such as /privacy/."
    )
    return ""


def _double_opt_in(env, mail):
    on = env.boolean("SIGNUP_DOUBLE_OPT_IN", False)
    # A mail URL that is set but wrong is a problem of its own already.
    if on and mail is None:
        env.problems.append(
            "SIGNUP_DOUBLE_OPT_IN is on but no mail is configured: set EMAIL_URL "
            "(or EMAIL_URL_FILE) and DEFAULT_FROM_EMAIL, or turn it off."
        )
    return on


def _admin_url(env):
    value = env.string("DJANGO_ADMIN_URL", DEFAULT_ADMIN_URL)
    if ADMIN_URL_PATTERN.fullmatch(value):
        return value
    env.problems.append(
        f"DJANGO_ADMIN_URL={value!r} is not an admin path: use segments of "
        "letters, digits and - . _ ~, each ending with a slash and none "
        "starting with one, e.g. admin/ or office/admin/ (not under static/)."
    )
    return DEFAULT_ADMIN_URL


def _superuser(env):
    """The admin account `bootstrap` creates, or None if none is configured."""
    account = {
        "USERNAME": env.string("DJANGO_SUPERUSER_USERNAME", ""),
        "EMAIL": env.string("DJANGO_SUPERUSER_EMAIL", ""),
        "PASSWORD": env.raw("DJANGO_SUPERUSER_PASSWORD") or "",
    }
    if not any(account.values()):
        return None
    missing = [
        f"DJANGO_SUPERUSER_{key}"
        for key in ("USERNAME", "PASSWORD")
        if not account[key]
    ]
    if missing:
        env.problems.append(
            f"{' and '.join(missing)} must be set too when an admin account is "
            "to be created from the environment (or unset all DJANGO_SUPERUSER_* "
            "variables)."
        )
    return account


def load(environ_=None):
    """The site's configuration from ENVIRON_ (default: os.environ), as a
    namespace; ConfigurationError lists every problem found."""
    env = EnvironmentReader(os.environ if environ_ is None else environ_)
    secret_key = _secret_key(env)
    debug = env.boolean("DJANGO_DEBUG", False)
    origin, hostname = _public_url(env)
    # "localhost" is also reached as 127.0.0.1 and [::1]; accept all three.
    loopback = ["127.0.0.1", "[::1]"] if hostname == "localhost" else []
    extra_hosts = env.list("DJANGO_ALLOWED_HOSTS")
    mail = _mail(env)
    config = SimpleNamespace(
        secret_key=secret_key,
        debug=debug,
        public_url=origin,
        https=origin.startswith("https:"),
        allowed_hosts=list(dict.fromkeys([hostname, *loopback, *extra_hosts])),
        csrf_trusted_origins=[origin],
        database=_database(env),
        superuser=_superuser(env),
        hsts_seconds=env.integer("DJANGO_HSTS_SECONDS", 3600),
        hsts_include_subdomains=env.boolean("DJANGO_HSTS_INCLUDE_SUBDOMAINS", True),
        hsts_preload=env.boolean("DJANGO_HSTS_PRELOAD", True),
        conn_max_age=env.integer("DJANGO_CONN_MAX_AGE", 60),
        admin_url=_admin_url(env),
        min_fill_seconds=_min_fill_seconds(env),
        secret_key_fallbacks=_secret_key_fallbacks(env),
        mail=mail,
        double_opt_in=_double_opt_in(env, mail),
        confirm_days=env.integer("SIGNUP_CONFIRM_DAYS", DEFAULT_CONFIRM_DAYS, 1),
        purge_days=env.integer("SIGNUP_PURGE_DAYS", DEFAULT_PURGE_DAYS, 1),
        consent_text=env.string("SIGNUP_CONSENT_TEXT", ""),
        privacy_url=_privacy_url(env),
        consent_checkbox=env.boolean("SIGNUP_CONSENT_CHECKBOX", False),
    )
    if config.purge_days < config.confirm_days:
        env.problems.append(
            f"SIGNUP_PURGE_DAYS={config.purge_days} is shorter than "
            f"SIGNUP_CONFIRM_DAYS={config.confirm_days}: a sign-up would be "
            "deleted while its confirmation link still works."
        )
    if env.problems:
        raise ConfigurationError(env.problems)
    return config

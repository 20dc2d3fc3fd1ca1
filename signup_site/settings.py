"""
Django settings for the sign-up site. What differs between deployments comes
from the environment through signup_site.configuration; the rest is here.
"""

from pathlib import Path

from signup_site import configuration

BASE_DIR = Path(__file__).resolve().parent.parent
# Lower-case, so not a setting the debug page would print: it holds secrets.
_config = configuration.load()

SECRET_KEY = _config.secret_key
# Earlier keys: links in mails already sent keep working after a rotation.
SECRET_KEY_FALLBACKS = _config.secret_key_fallbacks
DEBUG = _config.debug
ALLOWED_HOSTS = _config.allowed_hosts
CSRF_TRUSTED_ORIGINS = _config.csrf_trusted_origins
# The admin account `bootstrap` creates, or None; the debug page masks its
# PASSWORD by name, as in DATABASES.
BOOTSTRAP_SUPERUSER = _config.superuser
# Masks DATABASE_URL too (under runserver the environment is in request.META).
DEFAULT_EXCEPTION_REPORTER_FILTER = "signup_site.hardening.SecretMaskingFilter"

INSTALLED_APPS = [
    "accounts",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
]

MIDDLEWARE = [
    # First, so probes answer for any Host header and without a session.
    "signup_site.health.HealthCheckMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Turns a database outage in a view into the site's 503 page.
    "signup_site.health.DatabaseUnavailableMiddleware",
    # Sessions, users and messages are for the admin only: the public pages
    # never use them (signup_site.admin_only).
    "signup_site.admin_only.AdminSessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    # Before anything reads a form: refuses a body that is not UTF-8.
    "signup_site.hardening.FormEncodingMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "signup_site.admin_only.AdminAuthenticationMiddleware",
    "signup_site.admin_only.AdminMessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "signup_site.urls"
# The admin's path below the site's root (signup_site.urls).
ADMIN_URL = _config.admin_url
# A sign-up sent back sooner after its form was drawn is refused as automated
# (accounts.bots); 0 turns this check off, not the form token's signature.
SIGNUP_MIN_FILL_SECONDS = _config.min_fill_seconds
WSGI_APPLICATION = "signup_site.wsgi.application"

# Mail, from EMAIL_URL (django-environ's EMAIL_* settings). Without it the
# mailer sends nothing and the admin says so (accounts.outbox).
EMAIL_CONFIGURED = bool(_config.mail)
EMAIL_BACKEND = "django.core.mail.backends.dummy.EmailBackend"
vars().update(_config.mail or {})
# Double opt-in (accounts.mail): a sign-up counts once its address is
# confirmed through a link mailed to it, valid this many days.
SIGNUP_DOUBLE_OPT_IN = _config.double_opt_in
SIGNUP_CONFIRM_DAYS = _config.confirm_days
# Sign-ups still unconfirmed after this many days are deleted (purge_signups).
SIGNUP_PURGE_DAYS = _config.purge_days
# The consent wording shown on the form; each sign-up records its version.
SIGNUP_CONSENT_TEXT = _config.consent_text
SIGNUP_PRIVACY_URL = _config.privacy_url
SIGNUP_CONSENT_CHECKBOX = _config.consent_checkbox
# Links in mails are absolute: they point here.
SIGNUP_PUBLIC_URL = _config.public_url

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "signup_site" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Persistent connections with a health check, so a restarted server costs no
# request; the engine bounds every wait while serving (configuration.ENGINE).
DATABASES = {"default": _config.database}
DATABASES["default"]["CONN_MAX_AGE"] = _config.conn_max_age
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

AUTH_PASSWORD_VALIDATORS = [
    {
        "NAME": "django.contrib.auth.password_validation."
        "UserAttributeSimilarityValidator"
    },
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Collected into the image at build time and served by nginx, under hashed
# names that browsers may cache for a year.
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# The site-wide stylesheet and icon (nginx's error page uses them too).
STATICFILES_DIRS = [("site", BASE_DIR / "signup_site" / "static")]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "signup_site.static_storage.CachedManifestStaticFilesStorage"
    },
}

# Django's defaults cover the other security headers and cookie flags; what
# depends on HTTPS follows from DJANGO_PUBLIC_URL.
if _config.https:
    # nginx overwrites X-Forwarded-Proto on every request, so a client cannot
    # forge it; only then is this header safe to trust.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = _config.hsts_seconds
    SECURE_HSTS_INCLUDE_SUBDOMAINS = _config.hsts_include_subdomains
    SECURE_HSTS_PRELOAD = _config.hsts_preload

# Everything to the console, which the container runtime collects; a request
# refused for what the client sent is one line, never a traceback.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "refused_requests": {"()": "signup_site.hardening.RefusedRequestFilter"},
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["refused_requests"],
        },
    },
    "root": {"handlers": ["console"], "level": "INFO"},
    "loggers": {
        # Replaces Django's default handlers, which print tracebacks in DEBUG.
        "django": {"level": "INFO"},
        "django.request": {"level": "WARNING"},
    },
}

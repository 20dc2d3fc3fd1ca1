import pytest

from signup_site.configuration import ConfigurationError, EnvironmentReader, load
from tests.support.commands import manage, site_environment

GOOD_KEY = "0123456789abcdefghijklmnopqrstuvwxyz" * 2
BASE = {"DJANGO_SECRET_KEY": GOOD_KEY, "POSTGRES_PASSWORD": "pw"}


def problems(environment):
    with pytest.raises(ConfigurationError) as excinfo:
        load(environment)
    return excinfo.value.problems


def test_defaults():
    config = load(BASE)

    assert config.debug is False
    assert config.public_url == "http://localhost:8080"
    assert config.allowed_hosts == ["localhost", "127.0.0.1", "[::1]"]
    assert config.csrf_trusted_origins == ["http://localhost:8080"]
    assert config.https is False
    assert config.superuser is None
    assert config.database == {
        "ENGINE": "signup_site.postgresql",
        "HOST": "db",
        "PORT": 5432,
        "USER": "postgres",
        "PASSWORD": "pw",
        "NAME": "postgres",
        "OPTIONS": {"connect_timeout": 3},
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", True),
        ("true", True),
        ("TRUE", True),
        ("yes", True),
        ("on", True),
        ("0", False),
        ("false", False),
        ("False", False),
        ("no", False),
        ("off", False),
        (" off ", False),
        ("", False),
    ],
)
def test_debug_is_a_strict_boolean(value, expected):
    assert load({**BASE, "DJANGO_DEBUG": value}).debug is expected


@pytest.mark.parametrize("value", ["2", "maybe", "flase", "y e s", "enabled"])
def test_debug_rejects_anything_else(value):
    assert problems({**BASE, "DJANGO_DEBUG": value}) == [
        f"DJANGO_DEBUG={value!r} is not a boolean: use one of "
        "1/true/yes/on or 0/false/no/off."
    ]


def test_every_problem_is_listed_at_once():
    found = problems(
        {
            "DJANGO_DEBUG": "perhaps",
            "DJANGO_PUBLIC_URL": "localhost:8080",
            "POSTGRES_PORT": "five",
            "DJANGO_SUPERUSER_USERNAME": "admin",
        }
    )

    assert len(found) == 5, found
    joined = "\n".join(found)
    for name in (
        "DJANGO_SECRET_KEY (or DJANGO_SECRET_KEY_FILE) is not set",
        "DJANGO_DEBUG='perhaps'",
        "DJANGO_PUBLIC_URL='localhost:8080'",
        "POSTGRES_PORT='five'",
        "DJANGO_SUPERUSER_PASSWORD must be set too",
    ):
        assert name in joined


@pytest.mark.parametrize("value", ["+5", "1_000", "5.0", "-1", "\u0663", "$OTHER"])
def test_numbers_are_plain_digits_as_nginx_reads_them(value):
    assert problems({**BASE, "OTHER": "5", "DJANGO_HSTS_SECONDS": value}) == [
        f"DJANGO_HSTS_SECONDS={value!r} is not a whole number of at least 0."
    ]


@pytest.mark.parametrize(
    ("value", "seconds"), [(None, 1.0), ("0", 0.0), ("1.5", 1.5), ("10", 10.0)]
)
def test_the_minimum_fill_time_is_seconds_with_a_fraction(value, seconds):
    environment = {**BASE, "SIGNUP_MIN_FILL_SECONDS": value} if value else BASE

    assert load(environment).min_fill_seconds == seconds


def test_a_minimum_fill_time_of_an_hour_or_more_is_a_problem():
    assert problems({**BASE, "SIGNUP_MIN_FILL_SECONDS": "3600"}) == [
        "SIGNUP_MIN_FILL_SECONDS='3600' is longer than a person needs: use"
        " fewer than 3600 seconds."
    ]


@pytest.mark.parametrize("value", ["-1", "1,5", ".5", "2s", "\u0663"])
def test_a_minimum_fill_time_that_is_not_seconds_is_a_problem(value):
    assert problems({**BASE, "SIGNUP_MIN_FILL_SECONDS": value}) == [
        f"SIGNUP_MIN_FILL_SECONDS={value!r} is not a number of seconds,"
        " such as 2 or 1.5."
    ]


@pytest.mark.parametrize(
    ("key", "described"),
    [
        ("short", "5 characters, 5 different"),
        ("ab" * 30, "60 characters, 2 different"),
        ("django-insecure-" + "0123456789abcdef" * 3, "64 characters, 25 different"),
    ],
)
def test_secret_key_must_be_random_enough(key, described):
    (problem,) = problems({**BASE, "DJANGO_SECRET_KEY": key})

    assert problem.startswith(f"DJANGO_SECRET_KEY is not random enough ({described})")
    assert "secrets.token_urlsafe" in problem
    assert key not in problem


def test_secrets_from_files(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("file-" + GOOD_KEY + "\n")
    password_file = tmp_path / "password"
    password_file.write_text("from a file\n")

    config = load(
        {
            "DJANGO_SECRET_KEY_FILE": str(key_file),
            "POSTGRES_PASSWORD_FILE": str(password_file),
        }
    )

    assert config.secret_key == "file-" + GOOD_KEY
    assert config.database["PASSWORD"] == "from a file"


def test_secret_and_its_file_are_exclusive(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text(GOOD_KEY)

    assert problems({**BASE, "DJANGO_SECRET_KEY_FILE": str(key_file)}) == [
        "DJANGO_SECRET_KEY and DJANGO_SECRET_KEY_FILE are both set: "
        "set only one of them."
    ]


def test_empty_values_count_as_unset(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text(GOOD_KEY)

    config = load(
        {
            "DJANGO_SECRET_KEY": "",
            "DJANGO_SECRET_KEY_FILE": str(key_file),
            "POSTGRES_PASSWORD": "",
        }
    )

    assert config.secret_key == GOOD_KEY
    assert config.database["PASSWORD"] == ""


def test_database_password_is_optional_for_trust_authentication():
    assert load({"DJANGO_SECRET_KEY": GOOD_KEY}).database["PASSWORD"] == ""


def test_generated_secrets_are_used_only_for_what_is_not_set(tmp_path):
    (tmp_path / "django_secret_key").write_text("generated-" + GOOD_KEY + "\n")
    (tmp_path / "postgres_password").write_text("generated password\n")

    generated = load({"SIGNUP_SECRETS_DIR": str(tmp_path)})
    overridden = load(
        {
            "SIGNUP_SECRETS_DIR": str(tmp_path),
            "DJANGO_SECRET_KEY": GOOD_KEY,
            "POSTGRES_PASSWORD": "from .env",
        }
    )

    assert generated.secret_key == "generated-" + GOOD_KEY
    assert generated.database["PASSWORD"] == "generated password"
    assert overridden.secret_key == GOOD_KEY
    assert overridden.database["PASSWORD"] == "from .env"


def test_an_empty_secrets_dir_still_requires_a_secret_key(tmp_path):
    (problem,) = problems({"SIGNUP_SECRETS_DIR": str(tmp_path)})

    assert problem.startswith(
        "DJANGO_SECRET_KEY (or DJANGO_SECRET_KEY_FILE) is not set"
    )


def test_unreadable_secret_file_is_reported(tmp_path):
    (problem,) = problems(
        {"DJANGO_SECRET_KEY": GOOD_KEY, "POSTGRES_PASSWORD_FILE": str(tmp_path / "no")}
    )

    assert problem.startswith("POSTGRES_PASSWORD_FILE=")
    assert "cannot be read (No such file or directory)" in problem


@pytest.mark.parametrize(
    "password",
    ["p@ss:w/rd#?%+ é", "a'b\"c\\d", "%41%42", "space at end ", "$HOME ${X}"],
)
def test_any_password_works_without_url_encoding(password):
    config = load({"DJANGO_SECRET_KEY": GOOD_KEY, "POSTGRES_PASSWORD": password})

    assert config.database["PASSWORD"] == password


def test_database_pieces():
    config = load(
        {
            **BASE,
            "POSTGRES_HOST": "pg.internal",
            "POSTGRES_PORT": "6543",
            "POSTGRES_USER": "site",
            "POSTGRES_DB": "signups",
            "POSTGRES_CONNECT_TIMEOUT": "2",
        }
    )

    assert config.database["HOST"] == "pg.internal"
    assert config.database["PORT"] == 6543
    assert config.database["USER"] == "site"
    assert config.database["NAME"] == "signups"
    assert config.database["OPTIONS"] == {"connect_timeout": 2}


def test_database_url_wins_over_pieces():
    config = load(
        {
            "DJANGO_SECRET_KEY": GOOD_KEY,
            "DATABASE_URL": "postgres://u:p%40ss@h:5433/d",
        }
    )

    assert config.database["USER"] == "u"
    assert config.database["PASSWORD"] == "p@ss"
    assert config.database["HOST"] == "h"
    assert config.database["PORT"] == 5433
    assert config.database["NAME"] == "d"


@pytest.mark.parametrize(
    "url",
    [
        "mysql://u:hunter2@h/d",
        "postgres//u:hunter2@h/d",  # django-environ would warn, quoting it
        "postgres://u:hunter2@h:port/d",
        "postgres://u:hunter2@[h/d",
    ],
)
def test_database_url_must_be_postgres_and_is_never_quoted(url, recwarn):
    (problem,) = problems({"DJANGO_SECRET_KEY": GOOD_KEY, "DATABASE_URL": url})

    assert problem.startswith("DATABASE_URL is not a PostgreSQL address: use ")
    assert "hunter2" not in problem
    assert not [warning for warning in recwarn if "hunter2" in str(warning.message)]


@pytest.mark.parametrize(
    ("url", "origin", "hosts"),
    [
        (
            "http://localhost:8080",
            "http://localhost:8080",
            ["localhost", "127.0.0.1", "[::1]"],
        ),
        (
            "https://signup.example.com",
            "https://signup.example.com",
            ["signup.example.com"],
        ),
        (
            "https://Signup.Example.com:8443/",
            "https://signup.example.com:8443",
            ["signup.example.com"],
        ),
        ("http://127.0.0.1:9000", "http://127.0.0.1:9000", ["127.0.0.1"]),
        ("http://[::1]:8080", "http://[::1]:8080", ["[::1]"]),
        (" ", "http://localhost:8080", ["localhost", "127.0.0.1", "[::1]"]),
    ],
)
def test_public_url_sets_hosts_and_trusted_origins(url, origin, hosts):
    config = load({**BASE, "DJANGO_PUBLIC_URL": url})

    assert config.public_url == origin
    assert config.csrf_trusted_origins == [origin]
    assert config.allowed_hosts == hosts


@pytest.mark.parametrize(
    "url",
    [
        "localhost:8080",
        "ftp://example.com",
        "http://",
        "http://x/path",
        "http://x:99999",
        "http://x:08080",
        "http://[:]",
        "http://my_host",
        "http://u:p@x",
    ],
)
def test_public_url_must_be_a_site_address(url):
    (problem,) = problems({**BASE, "DJANGO_PUBLIC_URL": url})

    assert problem.startswith(f"DJANGO_PUBLIC_URL={url!r} is not a site address")


def test_extra_allowed_hosts_are_added():
    config = load({**BASE, "DJANGO_ALLOWED_HOSTS": "a.example, .b.example,,localhost"})

    assert config.allowed_hosts == [
        "localhost",
        "127.0.0.1",
        "[::1]",
        "a.example",
        ".b.example",
    ]


def test_superuser_from_environment():
    config = load(
        {
            **BASE,
            "DJANGO_SUPERUSER_USERNAME": "admin",
            "DJANGO_SUPERUSER_EMAIL": "admin@example.com",
            "DJANGO_SUPERUSER_PASSWORD": "a long passphrase",
        }
    )

    assert config.superuser == {
        "USERNAME": "admin",
        "EMAIL": "admin@example.com",
        "PASSWORD": "a long passphrase",
    }


def settings_in_child_process(names, **environment):
    script = "from django.conf import settings;" + "".join(
        f"print(repr(settings.{name}));" for name in names
    )
    result = manage(
        "shell", "--no-imports", "-c", script, env=site_environment(**environment)
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()


def test_https_public_url_turns_on_secure_cookies_hsts_and_proxy_header():
    values = settings_in_child_process(
        [
            "SESSION_COOKIE_SECURE",
            "CSRF_COOKIE_SECURE",
            "SECURE_HSTS_SECONDS",
            "SECURE_PROXY_SSL_HEADER",
            "SECURE_SSL_REDIRECT",
        ],
        DJANGO_SECRET_KEY=GOOD_KEY,
        POSTGRES_PASSWORD="x",
        DJANGO_PUBLIC_URL="https://signup.example.com",
    )

    assert values == [
        "True",
        "True",
        "3600",
        "('HTTP_X_FORWARDED_PROTO', 'https')",
        "True",
    ]


def test_http_public_url_keeps_cookies_usable_over_http():
    values = settings_in_child_process(
        [
            "SESSION_COOKIE_SECURE",
            "CSRF_COOKIE_SECURE",
            "SECURE_HSTS_SECONDS",
            "SECURE_PROXY_SSL_HEADER",
        ],
        DJANGO_SECRET_KEY=GOOD_KEY,
        POSTGRES_PASSWORD="x",
    )

    assert values == ["False", "False", "0", "None"]


def test_misconfiguration_stops_manage_py_with_one_message_and_no_traceback():
    result = manage(
        "check",
        env=site_environment(DJANGO_DEBUG="sometimes", POSTGRES_PORT="-1"),
    )

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(
        "The site is not configured correctly (3 problems):"
    )
    for name in (
        "DJANGO_SECRET_KEY",
        "DJANGO_DEBUG",
        "POSTGRES_PORT",
    ):
        assert f"  - {name}" in result.stderr
    assert result.stdout == ""


def test_no_default_secret_key_exists_anywhere():
    result = manage("check", env=site_environment(POSTGRES_PASSWORD="x"))

    assert result.returncode == 1
    assert "DJANGO_SECRET_KEY (or DJANGO_SECRET_KEY_FILE) is not set" in result.stderr


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "admin/"),
        ("", "admin/"),
        ("office/", "office/"),
        (" staff-7f3a/desk/ ", "staff-7f3a/desk/"),
        ("a.b_c~d/", "a.b_c~d/"),
        ("...x/.static/static/", "...x/.static/static/"),
    ],
)
def test_admin_url(value, expected):
    environment = BASE if value is None else {**BASE, "DJANGO_ADMIN_URL": value}
    assert load(environment).admin_url == expected


@pytest.mark.parametrize(
    "value",
    [
        "/admin/",  # a leading slash
        "admin",  # no trailing slash
        "/",
        "office//admin/",
        "../admin/",
        "office/./",
        "office/../",
        "static/admin/",  # nginx serves /static/ itself
        "ad min/",
        "admin/<int:x>/",
        'admin"/',
        "admin/;",
        "admin/$x/",
        "admïn/",
    ],
)
def test_admin_url_rejects_a_bad_path(value):
    assert problems({**BASE, "DJANGO_ADMIN_URL": value}) == [
        f"DJANGO_ADMIN_URL={value!r} is not an admin path: use segments of "
        "letters, digits and - . _ ~, each ending with a slash and none "
        "starting with one, e.g. admin/ or office/admin/ (not under static/)."
    ]


def test_a_bad_admin_url_stops_start_up_with_one_message():
    result = manage(
        "check",
        env=site_environment(
            DJANGO_SECRET_KEY=GOOD_KEY, DJANGO_ADMIN_URL="/admin", POSTGRES_HOST="x"
        ),
    )

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("The site is not configured correctly (1 problem):")
    assert "  - DJANGO_ADMIN_URL='/admin' is not an admin path" in result.stderr


def test_the_reader_gunicorn_shares_collects_its_problems_too():
    reader = EnvironmentReader(
        {"BIND": " a:1, ,b:2 ", "LEVEL": "Loud", "WORKERS": "$UNSET_NAME"}
    )

    assert reader.list("BIND") == ["a:1", "b:2"]
    assert reader.list("NOT_SET", default=["c:3"]) == ["c:3"]
    assert reader.choice("LEVEL", "info", ("info", "debug")) == "info"
    assert reader.integer("WORKERS", 3, minimum=1) == 3
    assert reader.problems == [
        "LEVEL='Loud' is not one of info, debug.",
        "WORKERS='$UNSET_NAME' is not a whole number of at least 1.",
    ]


# --------------------------------------------------------------------------
# mail, double opt-in and consent

MAIL = {**BASE, "DEFAULT_FROM_EMAIL": "Sign-ups <signup@example.com>"}
BAD_EMAIL_URL = (
    "EMAIL_URL is not a mail server address: use smtp://user:password@host:port "
    "(smtp+tls:// for STARTTLS, smtp+ssl:// for TLS from the start), with special "
    "characters in the password percent-encoded, or consolemail:// to print mail "
    "to the log."
)


def test_no_mail_by_default():
    config = load(BASE)

    assert config.mail is None
    assert config.double_opt_in is False
    assert (config.confirm_days, config.purge_days) == (7, 30)
    assert (config.consent_text, config.privacy_url) == ("", "")
    assert config.consent_checkbox is False
    assert config.secret_key_fallbacks == []


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "smtp://signup%40example.com:p%40ss%3Aw%2Frd@mail.example.com:25",
            {
                "EMAIL_HOST": "mail.example.com",
                "EMAIL_PORT": 25,
                "EMAIL_HOST_USER": "signup@example.com",
                "EMAIL_HOST_PASSWORD": "p@ss:w/rd",
            },
        ),
        # django-environ's smtps:// is STARTTLS, like smtp+tls://.
        (
            "smtps://mail.example.com:587",
            {
                "EMAIL_HOST": "mail.example.com",
                "EMAIL_PORT": 587,
                "EMAIL_USE_TLS": True,
            },
        ),
        (
            "smtp+tls://mail.example.com:587",
            {
                "EMAIL_HOST": "mail.example.com",
                "EMAIL_PORT": 587,
                "EMAIL_USE_TLS": True,
            },
        ),
        (
            "smtp+ssl://mail.example.com:465",
            {
                "EMAIL_HOST": "mail.example.com",
                "EMAIL_PORT": 465,
                "EMAIL_USE_SSL": True,
            },
        ),
    ],
)
def test_an_smtp_url_gives_djangos_settings(url, expected):
    config = load({**MAIL, "EMAIL_URL": url})

    assert config.mail == {
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        **expected,
        "EMAIL_TIMEOUT": 10.0,
        "DEFAULT_FROM_EMAIL": "Sign-ups <signup@example.com>",
    }


def test_console_mail_prints_to_the_log():
    config = load({**MAIL, "EMAIL_URL": "consolemail://"})

    assert config.mail["EMAIL_BACKEND"] == (
        "django.core.mail.backends.console.EmailBackend"
    )


def test_the_mail_url_and_timeout_from_a_file_and_the_environment(tmp_path):
    url_file = tmp_path / "email-url"
    url_file.write_text("smtp://user:secret@mail.example.com:2525\n")

    config = load({**MAIL, "EMAIL_URL_FILE": str(url_file), "EMAIL_TIMEOUT": "2.5"})

    assert config.mail["EMAIL_HOST_PASSWORD"] == "secret"
    assert config.mail["EMAIL_PORT"] == 2525
    assert config.mail["EMAIL_TIMEOUT"] == 2.5


@pytest.mark.parametrize(
    "url",
    [
        "mail.example.com:25",
        "http://mail.example.com",
        "smtp://user:secret@mail.example.com:notaport",
        "smtp://user:secret@mail.example.com:99999",
        "smtpx://user:secret@mail.example.com",
        "smtp://",
        "smtp+tls://user:secret@:587",
        "smtp+ssl://user:secret@",
    ],
)
def test_a_bad_mail_url_is_a_problem_that_never_shows_the_password(url):
    found = problems({**MAIL, "EMAIL_URL": url})

    assert found == [BAD_EMAIL_URL]
    assert "secret" not in "".join(found)


@pytest.mark.parametrize("value", ["0", "0.0"])
def test_a_mail_timeout_of_zero_is_a_problem(value):
    assert problems(
        {**MAIL, "EMAIL_URL": "smtp://mail.example.com", "EMAIL_TIMEOUT": value}
    ) == [
        f"EMAIL_TIMEOUT={value!r} is not a time to wait: use a number of seconds "
        "above 0, such as 10."
    ]


def test_mail_without_a_sender_is_a_problem():
    assert problems({**BASE, "EMAIL_URL": "smtp://mail.example.com:25"}) == [
        "DEFAULT_FROM_EMAIL is not set: mail needs a sender address, e.g. "
        "DEFAULT_FROM_EMAIL='Sign-ups <signup@example.com>'."
    ]


@pytest.mark.parametrize("sender", ["signup", "Sign-ups", "a b@example.com"])
def test_a_sender_that_is_not_an_address_is_a_problem(sender):
    environment = {
        **BASE,
        "EMAIL_URL": "smtp://mail.example.com:25",
        "DEFAULT_FROM_EMAIL": sender,
    }

    assert problems(environment) == [
        f"DEFAULT_FROM_EMAIL={sender!r} is not a mail address: use "
        "signup@example.com or 'Sign-ups <signup@example.com>'."
    ]


def test_double_opt_in_without_mail_is_a_problem():
    assert problems({**BASE, "SIGNUP_DOUBLE_OPT_IN": "true"}) == [
        "SIGNUP_DOUBLE_OPT_IN is on but no mail is configured: set EMAIL_URL "
        "(or EMAIL_URL_FILE) and DEFAULT_FROM_EMAIL, or turn it off."
    ]


def test_double_opt_in_with_a_bad_mail_url_names_the_url_only():
    found = problems({**MAIL, "EMAIL_URL": "http://x", "SIGNUP_DOUBLE_OPT_IN": "1"})

    assert found == [BAD_EMAIL_URL]


def test_double_opt_in_with_mail():
    config = load(
        {**MAIL, "EMAIL_URL": "smtp://mail.example.com", "SIGNUP_DOUBLE_OPT_IN": "on"}
    )

    assert config.double_opt_in is True


@pytest.mark.parametrize(("purge", "confirm"), [("6", None), ("3", "4"), ("1", "2")])
def test_a_purge_shorter_than_the_confirmation_is_a_problem(purge, confirm):
    environment = {**BASE, "SIGNUP_PURGE_DAYS": purge}
    if confirm:
        environment["SIGNUP_CONFIRM_DAYS"] = confirm

    assert problems(environment) == [
        f"SIGNUP_PURGE_DAYS={purge} is shorter than SIGNUP_CONFIRM_DAYS="
        f"{confirm or 7}: a sign-up would be deleted while its confirmation "
        "link still works."
    ]


def test_purge_and_confirmation_may_be_the_same_length():
    config = load({**BASE, "SIGNUP_PURGE_DAYS": "7", "SIGNUP_CONFIRM_DAYS": "7"})

    assert (config.confirm_days, config.purge_days) == (7, 7)


@pytest.mark.parametrize("name", ["SIGNUP_CONFIRM_DAYS", "SIGNUP_PURGE_DAYS"])
@pytest.mark.parametrize("value", ["0", "a week", "-1", "1.5"])
def test_days_are_whole_numbers_of_at_least_one(name, value):
    found = problems({**BASE, name: value})

    assert f"{name}={value!r} is not a whole number of at least 1." in found


@pytest.mark.parametrize(
    "url", ["https://example.com/privacy", "/privacy/", "http://example.com/p?a=1"]
)
def test_the_consent_wording(url):
    config = load(
        {
            **BASE,
            "SIGNUP_CONSENT_TEXT": " I agree to the monthly news. ",
            "SIGNUP_PRIVACY_URL": url,
            "SIGNUP_CONSENT_CHECKBOX": "yes",
        }
    )

    assert config.consent_text == "I agree to the monthly news."
    assert config.privacy_url == url
    assert config.consent_checkbox is True


@pytest.mark.parametrize(
    "url", ["javascript:alert(1)", "privacy", "ftp://example.com/", '/a"onclick=x']
)
def test_a_privacy_url_that_is_not_a_link_is_a_problem(url):
    (problem,) = problems({**BASE, "SIGNUP_PRIVACY_URL": url})

    assert problem.startswith(f"SIGNUP_PRIVACY_URL={url!r} is not a link")


def test_earlier_secret_keys_from_a_list_or_a_file(tmp_path):
    listed = load({**BASE, "DJANGO_SECRET_KEY_FALLBACKS": " old-one , older-one ,"})
    keys = tmp_path / "fallbacks"
    keys.write_text("old-one\n\nolder-one\n")
    from_file = load({**BASE, "DJANGO_SECRET_KEY_FALLBACKS_FILE": str(keys)})
    # Kubernetes' example overlay mounts an empty file until the key changes.
    empty = tmp_path / "none"
    empty.write_text("")
    from_empty = load({**BASE, "DJANGO_SECRET_KEY_FALLBACKS_FILE": str(empty)})

    assert listed.secret_key_fallbacks == ["old-one", "older-one"]
    assert from_file.secret_key_fallbacks == ["old-one", "older-one"]
    assert from_empty.secret_key_fallbacks == []


def test_mail_problems_are_listed_with_the_others():
    found = problems(
        {
            "DJANGO_DEBUG": "perhaps",
            "EMAIL_URL": "http://mail.example.com",
            "SIGNUP_DOUBLE_OPT_IN": "maybe",
            "SIGNUP_PURGE_DAYS": "2",
            "SIGNUP_PRIVACY_URL": "privacy",
        }
    )

    joined = "\n".join(found)
    assert len(found) == 6, found
    for start in (
        "DJANGO_SECRET_KEY (or DJANGO_SECRET_KEY_FILE) is not set",
        "DJANGO_DEBUG='perhaps'",
        "EMAIL_URL is not a mail server address",
        "SIGNUP_DOUBLE_OPT_IN='maybe' is not a boolean",
        "SIGNUP_PURGE_DAYS=2 is shorter than SIGNUP_CONFIRM_DAYS=7",
        "SIGNUP_PRIVACY_URL='privacy' is not a link",
    ):
        assert start in joined


def test_mail_problems_stop_manage_py_with_one_message():
    result = manage(
        "check",
        env=site_environment(
            DJANGO_SECRET_KEY=GOOD_KEY,
            POSTGRES_PASSWORD="x",
            SIGNUP_DOUBLE_OPT_IN="true",
            SIGNUP_PURGE_DAYS="1",
        ),
    )

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(
        "The site is not configured correctly (2 problems):"
    )
    assert "  - SIGNUP_DOUBLE_OPT_IN is on but no mail is configured" in result.stderr
    assert "  - SIGNUP_PURGE_DAYS=1 is shorter than" in result.stderr


def test_the_mail_settings_reach_django():
    values = settings_in_child_process(
        [
            "EMAIL_CONFIGURED",
            "EMAIL_BACKEND",
            "EMAIL_HOST",
            "EMAIL_PORT",
            "EMAIL_USE_SSL",
            "EMAIL_TIMEOUT",
            "DEFAULT_FROM_EMAIL",
            "SIGNUP_DOUBLE_OPT_IN",
            "SECRET_KEY_FALLBACKS",
        ],
        DJANGO_SECRET_KEY=GOOD_KEY,
        POSTGRES_PASSWORD="x",
        EMAIL_URL="smtp+ssl://mail.example.com:465",
        DEFAULT_FROM_EMAIL="signup@example.com",
        SIGNUP_DOUBLE_OPT_IN="true",
        DJANGO_SECRET_KEY_FALLBACKS="old-key",
    )

    assert values == [
        "True",
        "'django.core.mail.backends.smtp.EmailBackend'",
        "'mail.example.com'",
        "465",
        "True",
        "10.0",
        "'signup@example.com'",
        "True",
        "['old-key']",
    ]


def test_without_mail_django_sends_nowhere():
    values = settings_in_child_process(
        ["EMAIL_CONFIGURED", "EMAIL_BACKEND", "SIGNUP_DOUBLE_OPT_IN"],
        DJANGO_SECRET_KEY=GOOD_KEY,
        POSTGRES_PASSWORD="x",
    )

    assert values == [
        "False",
        "'django.core.mail.backends.dummy.EmailBackend'",
        "False",
    ]

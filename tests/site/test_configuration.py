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
        "ENGINE": "django.db.backends.postgresql",
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

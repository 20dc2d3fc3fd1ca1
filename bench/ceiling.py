"""
The ceiling: the smallest honest WSGI app that does the sign-up site's job,
what the site is measured against. It serves the same page (a fixed HTML form
with a token field and a token cookie), checks the token and the Origin of a
sign-up, stores it with one ``INSERT ... ON CONFLICT DO NOTHING`` over one
persistent connection per worker, and redirects to the thank-you page, with
the site's security headers. No framework, no validation beyond what keeps
the table honest, no logging of its own. It runs under the same gunicorn
config, behind the same nginx, against the same table:

    gunicorn -c docker/web/gunicorn.conf.py bench.ceiling:application
"""

import hmac
import os
import secrets
from urllib.parse import parse_qs

import psycopg

COOKIE_NAME = "csrftoken"
FIELD_NAME = "csrfmiddlewaretoken"
MAX_BODY = 64 * 1024
INSERT = (
    "INSERT INTO accounts_signup (name, email) VALUES (%s, %s) ON CONFLICT DO NOTHING"
)

# The site's form page, as Django renders it for a first visit, with the
# token left open.
PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Sign up</title>
  <link rel="stylesheet" href="/static/site/site.css">
</head>
<body>
  <main class="card">
<h1>Hello, please sign up!</h1>
<form method="post" action="/" novalidate>
  <input type="hidden" name="csrfmiddlewaretoken" value="{token}">
  <div class="field">
    <label for="id_name">Name</label>
    <input type="text" name="name" id="id_name"
      autocomplete="name" maxlength="256" required>
  </div>
  <div class="field">
    <label for="id_email">Email address</label>
    <input type="email" name="email" id="id_email"
      autocomplete="email" maxlength="254" required>
  </div>
  <button type="submit">Go</button>
</form>
  </main>
</body>
</html>
"""
THANKS = b"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Thank you</title></head>
<body><main class="card"><h1>Thank you for signing up!</h1>
<p><a href="/">Back to the form</a></p></main></body>
</html>
"""
SECURITY_HEADERS = [
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
]
HTML = ("Content-Type", "text/html; charset=utf-8")

_connection = None


def connection():
    """This worker's connection, opened on first use and again after a failure."""
    global _connection
    if _connection is None or _connection.closed:
        _connection = psycopg.connect(
            host=os.environ.get("POSTGRES_HOST", "127.0.0.1"),
            port=os.environ.get("POSTGRES_PORT", "5432"),
            user=os.environ.get("POSTGRES_USER", "postgres"),
            password=os.environ.get("POSTGRES_PASSWORD") or None,
            dbname=os.environ.get("POSTGRES_DB", "postgres"),
            connect_timeout=5,
            autocommit=True,
        )
    return _connection


def cookie_token(environ):
    for part in environ.get("HTTP_COOKIE", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE_NAME and value:
            return value
    return None


def respond(start_response, status, headers, body=b""):
    start_response(
        status,
        [*headers, *SECURITY_HEADERS, ("Content-Length", str(len(body)))],
    )
    return [body]


def form(environ, start_response):
    token = cookie_token(environ) or secrets.token_hex(32)
    return respond(
        start_response,
        "200 OK",
        [
            HTML,
            ("Vary", "Cookie"),
            (
                "Set-Cookie",
                f"{COOKIE_NAME}={token}; Max-Age=31449600; Path=/; SameSite=Lax",
            ),
        ],
        PAGE.format(token=token).encode(),
    )


def sign_up(environ, start_response):
    forbidden = (start_response, "403 Forbidden", [HTML], b"<h1>Forbidden</h1>")
    origin = environ.get("HTTP_ORIGIN")
    host = environ.get("HTTP_HOST", "")
    if origin is not None and origin != f"{environ['wsgi.url_scheme']}://{host}":
        return respond(*forbidden)
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = -1
    if not 0 < length <= MAX_BODY:
        return respond(start_response, "400 Bad Request", [HTML], b"")
    fields = parse_qs(environ["wsgi.input"].read(length).decode("utf-8", "replace"))
    token = cookie_token(environ)
    sent = fields.get(FIELD_NAME, [""])[0]
    if not token or not hmac.compare_digest(token.encode(), sent.encode()):
        return respond(*forbidden)
    name = fields.get("name", [""])[0].strip()
    email = fields.get("email", [""])[0].strip()
    local, at, domain = email.rpartition("@")
    if (
        not (0 < len(name) <= 256 and local and at and "." in domain)
        or len(email) > 254
    ):
        page = PAGE.format(token=token).encode()
        return respond(start_response, "200 OK", [HTML], page)
    email = f"{local}@{domain.lower()}"
    try:
        connection().execute(INSERT, (name, email))
    except psycopg.OperationalError:
        # The server went away: a new connection, once.
        connection().close()
        connection().execute(INSERT, (name, email))
    return respond(start_response, "302 Found", [("Location", "/thanks/")])


def application(environ, start_response):
    path, method = environ.get("PATH_INFO", "/"), environ["REQUEST_METHOD"]
    if path == "/" and method in ("GET", "HEAD"):
        return form(environ, start_response)
    if path == "/" and method == "POST":
        return sign_up(environ, start_response)
    if path == "/thanks/":
        return respond(start_response, "200 OK", [HTML], THANKS)
    if path in ("/healthz", "/readyz"):
        return respond(
            start_response,
            "200 OK",
            [("Content-Type", "application/json"), ("Cache-Control", "no-store")],
            b'{"status": "ok"}',
        )
    return respond(start_response, "404 Not Found", [HTML], b"<h1>Not found</h1>")

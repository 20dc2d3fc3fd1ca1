"""
The ceiling the site is measured against: the smallest honest WSGI app doing
its job (the same form, token and Origin checked, one INSERT ... ON CONFLICT
over a connection per worker, the redirect, the security headers), under the
same gunicorn config, nginx and table. No framework, no logging of its own.
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

# The site's form page as Django renders it for a first visit.
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
SECURITY_HEADERS = [
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
]
HTML = ("Content-Type", "text/html; charset=utf-8")
FORBIDDEN = ("403 Forbidden", [HTML], b"<h1>Forbidden</h1>")
NOT_FOUND = ("404 Not Found", [HTML], b"<h1>Not found</h1>")
HEALTHY = (
    "200 OK",
    [("Content-Type", "application/json"), ("Cache-Control", "no-store")],
    b'{"status": "ok"}',
)
# The paths that answer the same whatever is sent.
FIXED = {
    "/thanks/": ("200 OK", [HTML], b"<h1>Thank you for signing up!</h1>"),
    "/healthz": HEALTHY,
    "/readyz": HEALTHY,
}

_connection = None


def connection():
    """This worker's connection, opened on first use and again after a failure."""
    global _connection
    if _connection is None or _connection.closed:
        keys = ("host", "port", "user", "password")
        params = {key: os.environ[f"POSTGRES_{key.upper()}"] for key in keys}
        params["dbname"] = os.environ["POSTGRES_DB"]
        _connection = psycopg.connect(**params, connect_timeout=5, autocommit=True)
    return _connection


def cookie_token(environ):
    for part in environ.get("HTTP_COOKIE", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE_NAME and value:
            return value
    return None


def form(environ):
    token = cookie_token(environ) or secrets.token_hex(32)
    cookie = f"{COOKIE_NAME}={token}; Max-Age=31449600; Path=/; SameSite=Lax"
    headers = [HTML, ("Vary", "Cookie"), ("Set-Cookie", cookie)]
    return "200 OK", headers, PAGE.format(token=token).encode()


def sign_up(environ):
    own = f"{environ['wsgi.url_scheme']}://{environ.get('HTTP_HOST', '')}"
    if environ.get("HTTP_ORIGIN", own) != own:
        return FORBIDDEN
    length = environ.get("CONTENT_LENGTH") or "0"
    if not (length.isdigit() and 0 < int(length) <= MAX_BODY):
        return "400 Bad Request", [HTML], b""
    body = environ["wsgi.input"].read(int(length)).decode("utf-8", "replace")
    fields = {key: values[0].strip() for key, values in parse_qs(body).items()}
    token, sent = cookie_token(environ), fields.get(FIELD_NAME, "")
    if not token or not hmac.compare_digest(token.encode(), sent.encode()):
        return FORBIDDEN
    name, email = fields.get("name", ""), fields.get("email", "")
    local, at, domain = email.rpartition("@")
    valid = local and at and "." in domain and len(email) <= 254
    if not (valid and 0 < len(name) <= 256):
        return "200 OK", [HTML], PAGE.format(token=token).encode()
    row = (name, f"{local}@{domain.lower()}")
    try:
        connection().execute(INSERT, row)
    except psycopg.OperationalError:
        # The server went away: a new connection, once.
        connection().close()
        connection().execute(INSERT, row)
    return "302 Found", [("Location", "/thanks/")], b""


def application(environ, start_response):
    path, method = environ.get("PATH_INFO", "/"), environ["REQUEST_METHOD"]
    if (path, method) == ("/", "POST"):
        status, headers, body = sign_up(environ)
    elif path == "/" and method in ("GET", "HEAD"):
        status, headers, body = form(environ)
    else:
        status, headers, body = FIXED.get(path, NOT_FOUND)
    start_response(
        status, [*headers, *SECURITY_HEADERS, ("Content-Length", str(len(body)))]
    )
    return [body]

"""
Django's PostgreSQL backend with bounded waits (see base.py).

This package's own module imports nothing from Django, so that
signup_site.wsgi can turn the bounds on before Django is set up.
"""

_bounded = False


def bound_waits():
    """Bound every database wait of this process: it serves requests."""
    global _bounded
    _bounded = True


def waits_are_bounded():
    return _bounded

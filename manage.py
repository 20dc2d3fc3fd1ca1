#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "signup_site.settings")
    from django.core.management import execute_from_command_line

    from signup_site.configuration import ConfigurationError

    try:
        execute_from_command_line(sys.argv)
    except ConfigurationError as exc:
        # One readable list of what to fix, not a traceback.
        sys.exit(str(exc))


if __name__ == "__main__":
    main()

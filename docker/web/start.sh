#!/bin/sh
# Start the site: make the database ready, then hand the process over to
# gunicorn (exec), so that it is PID 1 and receives the container's SIGTERM.
set -eu
cd /app
python manage.py bootstrap --no-input --timeout "${BOOTSTRAP_TIMEOUT:-60}"
exec gunicorn --config docker/web/gunicorn.conf.py signup_site.wsgi:application

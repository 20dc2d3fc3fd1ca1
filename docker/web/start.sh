#!/bin/sh
# Start the site: make the database ready, then run gunicorn.
#
# With WEB_STOP_DELAY unset or 0, gunicorn replaces this shell (exec): it is
# PID 1 and drains requests on the container's SIGTERM. With a delay, the
# shell stays in between and passes SIGTERM on only after that many seconds,
# serving meanwhile: Swarm takes a stopping task out of its DNS before it
# sends SIGTERM, and nginx keeps an address it resolved for up to 5 s, so
# nginx must have stopped sending here before gunicorn closes its socket.
set -eu
cd "$(dirname "$0")/../.."  # /app in the image
python manage.py bootstrap --no-input --timeout "${BOOTSTRAP_TIMEOUT:-60}"
delay="${WEB_STOP_DELAY:-0}"
if [ "$delay" = 0 ]; then
  exec gunicorn --config docker/web/gunicorn.conf.py signup_site.wsgi:application
fi
gunicorn --config docker/web/gunicorn.conf.py signup_site.wsgi:application &
gunicorn=$!
trap 'sleep "$delay"; kill -TERM "$gunicorn"' TERM
trap 'kill -INT "$gunicorn"' INT
status=0
wait "$gunicorn" || status=$?
# A trapped signal ends a wait early: wait until gunicorn itself has exited.
while kill -0 "$gunicorn" 2>/dev/null; do
  status=0
  wait "$gunicorn" || status=$?
done
exit "$status"

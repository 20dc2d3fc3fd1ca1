#!/bin/sh
# Entry point wrapper for the database container (mounted by compose.yaml).
#
# On the first start of a stack with no .env, nothing secret exists yet: make
# the database password and Django's secret key here, once, into the shared
# secrets volume. Values set in the environment (.env) always win; the web
# container reads the same files through SIGNUP_SECRETS_DIR.
set -eu
dir="${SIGNUP_SECRETS_DIR:-/run/signup-secrets}"

generate() {
  # $1: file name, $2: length. Written to a temporary name and renamed, so a
  # reader never sees half a secret.
  if [ ! -s "$dir/$1" ]; then
    LC_ALL=C tr -dc 'A-Za-z0-9' </dev/urandom | head -c "$2" >"$dir/.$1.tmp"
    chmod 0444 "$dir/.$1.tmp"
    mv "$dir/.$1.tmp" "$dir/$1"
    echo "generate-secrets: created $dir/$1"
  fi
}

generate postgres_password 32
generate django_secret_key 64

if [ -z "${POSTGRES_PASSWORD:-}" ] && [ -z "${POSTGRES_PASSWORD_FILE:-}" ]; then
  unset POSTGRES_PASSWORD
  export POSTGRES_PASSWORD_FILE="$dir/postgres_password"
fi
exec "$@"

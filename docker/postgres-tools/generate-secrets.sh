#!/bin/sh
# The one-shot `secrets` service of compose.yaml, run before the database
# starts, with no network (the script is mounted into the postgres image).
#
# On the first start of a stack with no .env nothing secret exists yet: make
# the database password and Django's secret key, once, into the `secrets`
# volume, which no other service mounts. Then, on every start, hand each
# service a copy of only what it uses, readable only by the user that reads it:
#
#   db, backup, restore  postgres_password                     uid 999
#   web                  postgres_password, django_secret_key  uid 10001
#
# 999 is postgres in the official image (its entrypoint reads the password
# file as root and as postgres); 10001 is the user the web image runs as. The
# password handed out is POSTGRES_PASSWORD when .env sets it, so every
# service reads the same one; web reads DJANGO_SECRET_KEY from .env first.
set -eu
umask 077
store="${SIGNUP_SECRETS_DIR:-/run/signup-secrets}"
for_db="${SIGNUP_DB_SECRETS_DIR:-/run/secrets-for/db}"
for_web="${SIGNUP_WEB_SECRETS_DIR:-/run/secrets-for/web}"
DB_UID=999
WEB_UID=10001

generate() {
  # $1: file name, $2: length. Written to a temporary name and renamed, so a
  # reader never sees half a secret.
  if [ ! -s "$store/$1" ]; then
    LC_ALL=C tr -dc 'A-Za-z0-9' </dev/urandom | head -c "$2" >"$store/.$1.tmp"
    mv "$store/.$1.tmp" "$store/$1"
    echo "generate-secrets: created $1"
  fi
  # Root only, whatever mode a file already in the store has.
  chmod 0400 "$store/$1"
}

hand_out() {
  # $1: directory, $2: owner's uid, $3: file name; the value on stdin.
  cat >"$1/.$3.tmp"
  chown "$2:$2" "$1/.$3.tmp"
  chmod 0400 "$1/.$3.tmp"
  mv "$1/.$3.tmp" "$1/$3"
}

generate postgres_password 32
generate django_secret_key 64

password() {
  if [ -n "${POSTGRES_PASSWORD:-}" ]; then
    printf '%s' "$POSTGRES_PASSWORD"
  else
    cat "$store/postgres_password"
  fi
}

password | hand_out "$for_db" "$DB_UID" postgres_password
password | hand_out "$for_web" "$WEB_UID" postgres_password
hand_out "$for_web" "$WEB_UID" django_secret_key <"$store/django_secret_key"
echo "generate-secrets: handed out to db (uid $DB_UID) and web (uid $WEB_UID)"

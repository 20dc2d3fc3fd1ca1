#!/bin/sh
# Backup and restore of the site's database: pg_dump/pg_restore in PostgreSQL's
# custom format, with retention. compose.yaml runs it as the one-shot services
# `backup` and `restore` (profile "backup"; `up` never starts them):
#
#   docker compose run --rm backup               # a new backup, then retention
#   docker compose run --rm backup list          # the backups there are
#   docker compose run --rm restore              # the newest backup back in
#   docker compose run --rm restore signup-20250101T020000Z.dump
#
# Usage: backup.sh backup | list | restore [latest | NAME | PATH]
#
# It runs anywhere the PostgreSQL client tools (pg_dump, pg_restore, psql) are,
# configured like the site (default in brackets):
#
#   POSTGRES_HOST [db], POSTGRES_PORT [5432], POSTGRES_USER [signup],
#   POSTGRES_DB [signup]
#   POSTGRES_PASSWORD, or POSTGRES_PASSWORD_FILE, or else the generated
#                 $SIGNUP_SECRETS_DIR/postgres_password when it exists
#   BACKUP_DIR    where backups are kept [/backups]
#   BACKUP_KEEP   how many backups to keep; older ones are removed after each
#                 new backup; 0 keeps every one [7]
#
# Backups are named DB-YYYYmmddTHHMMSSZ.dump (UTC), so names sort by age. A
# backup is written under a temporary name and renamed only once pg_restore
# can read it back, so an interrupted run never leaves a half backup that
# would count. A restore first saves the data it replaces as
# before-restore-DB-....dump (kept like backups), then restores in one
# transaction: it either completes or changes nothing.
set -eu
umask 077    # backups hold personal data: readable by their owner only

host="${POSTGRES_HOST:-db}"
port="${POSTGRES_PORT:-5432}"
user="${POSTGRES_USER:-signup}"
database="${POSTGRES_DB:-signup}"
dir="${BACKUP_DIR:-/backups}"
keep="${BACKUP_KEEP:-7}"

say() { printf '%s\n' "$*"; }
fail() {
  printf 'backup: %s\n' "$*" >&2
  exit 1
}

case "$keep" in
'' | *[!0-9]*) fail "BACKUP_KEEP must be a whole number (0 keeps every backup), not \"$keep\"" ;;
esac

if [ -z "${POSTGRES_PASSWORD:-}" ]; then
  password_file="${POSTGRES_PASSWORD_FILE:-}"
  if [ -z "$password_file" ] && [ -n "${SIGNUP_SECRETS_DIR:-}" ] &&
    [ -s "$SIGNUP_SECRETS_DIR/postgres_password" ]; then
    password_file="$SIGNUP_SECRETS_DIR/postgres_password"
  fi
  if [ -n "$password_file" ]; then
    [ -r "$password_file" ] || fail "cannot read the password file $password_file"
    POSTGRES_PASSWORD="$(cat "$password_file")"
  fi
fi
# libpq reads these; nothing secret appears on a command line.
if [ -n "${POSTGRES_PASSWORD:-}" ]; then export PGPASSWORD="$POSTGRES_PASSWORD"; fi
export PGHOST="$host" PGPORT="$port" PGUSER="$user" PGDATABASE="$database"
export PGCONNECT_TIMEOUT="${POSTGRES_CONNECT_TIMEOUT:-10}"
target="database \"$database\" on $host:$port"

sql() { psql --no-psqlrc --quiet --tuples-only --no-align --command="$1"; }

# Tables (with their rows) in the database, outside PostgreSQL's own schemas.
USER_TABLES="SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%'"

human_size() {
  # $1: bytes
  awk -v b="$1" 'BEGIN {
    split("B KB MB GB TB", unit); i = 1
    while (b >= 1024 && i < 5) { b /= 1024; i++ }
    format = (i == 1) ? "%d %s" : "%.1f %s"
    printf format, b, unit[i]
  }'
}

file_size() { wc -c <"$1" | tr -d ' '; }

# run_with_progress TOTAL PATTERN COMMAND...: run COMMAND (whose --verbose
# messages go to stderr) and turn each message matching PATTERN, one per
# table, into "  [n/TOTAL] table"; other messages pass through unless they are
# the tools' routine chatter. Returns COMMAND's exit status.
run_with_progress() {
  total="$1" pattern="$2"
  shift 2
  status_file="$(mktemp)"
  {
    if "$@" 2>&1; then code=0; else code=$?; fi
    echo "$code" >"$status_file"
  } | {
    n=0
    while IFS= read -r line; do
      case "$line" in
      *"$pattern"*)
        n=$((n + 1))
        table="${line#*"$pattern" }"
        table="${table#\"}"
        say "  [$n/$total] ${table%\"}"
        ;;
      *"error"* | *"ERROR"* | *"FATAL"* | *"warning"* | *"WARNING"*) say "$line" >&2 ;;
      esac
    done
  }
  status="$(cat "$status_file")"
  rm -f "$status_file"
  return "$status"
}

# dump FILE: pg_dump the database into FILE (via FILE.partial); say how big.
dump() {
  file="$1"
  partial="$file.partial"
  tables="$(sql "$USER_TABLES")" || fail "cannot connect to $target"
  size="$(sql "SELECT pg_database_size(current_database())")"
  say "Backing up $target ($tables tables, $(human_size "$size") on disk) to $file"
  trap 'rm -f "$partial"' EXIT
  started="$(date +%s)"
  if ! run_with_progress "$tables" "dumping contents of table" \
    pg_dump --format=custom --verbose --file="$partial"; then
    fail "pg_dump of $target failed; no backup was written"
  fi
  pg_restore --list "$partial" >/dev/null ||
    fail "the new backup cannot be read back; it was not kept"
  mv "$partial" "$file"
  trap - EXIT
  say "Backup written: $(basename "$file") ($(human_size "$(file_size "$file")")) in $(($(date +%s) - started)) s."
}

# new_name PREFIX: a free "$dir/PREFIX-YYYYmmddTHHMMSSZ.dump" (waits a second
# rather than adding a suffix, which would break the sort order).
new_name() {
  while :; do
    candidate="$dir/$1-$(date -u +%Y%m%dT%H%M%SZ).dump"
    [ -e "$candidate" ] || [ -e "$candidate.partial" ] || break
    sleep 1
  done
  printf '%s\n' "$candidate"
}

# backups PREFIX: the complete backups named PREFIX-*.dump, newest first.
backups() {
  for file in "$dir/$1"-*.dump; do
    [ -f "$file" ] && printf '%s\n' "$file"
  done | sort -r
}

# prune PREFIX: remove all but the newest $keep backups named PREFIX-*.dump.
prune() {
  if [ "$keep" -gt 0 ]; then
    backups "$1" | tail -n "+$((keep + 1))" | while IFS= read -r file; do
      rm -f "$file"
      say "Retention (BACKUP_KEEP=$keep): removed $(basename "$file")"
    done
  fi
  say "$(backups "$1" | wc -l | tr -d ' ') backup(s) named $1-*.dump in $dir."
}

do_backup() {
  mkdir -p "$dir"
  [ -w "$dir" ] || fail "cannot write to $dir"
  dump "$(new_name "$database")"
  prune "$database"
}

do_list() {
  listing="$(backups "$database"; backups "before-restore-$database")"
  if [ -z "$listing" ]; then
    say "No backups of \"$database\" in $dir yet."
    return 0
  fi
  say "Backups in $dir, newest first:"
  printf '%s\n' "$listing" | while IFS= read -r file; do
    say "  $(basename "$file")  $(human_size "$(file_size "$file")")"
  done
}

do_restore() {
  choice="${1:-latest}"
  case "$choice" in
  latest)
    backup_file="$(backups "$database" | head -n 1)"
    [ -n "$backup_file" ] || fail "no backups of \"$database\" in $dir to restore"
    ;;
  */*) backup_file="$choice" ;;
  *) backup_file="$dir/$choice" ;;
  esac
  [ -f "$backup_file" ] || fail "no such backup: $backup_file (see: backup.sh list)"
  contents="$(pg_restore --list "$backup_file")" ||
    fail "$backup_file is not a backup pg_restore can read"
  backup_tables="$(printf '%s\n' "$contents" | grep -c ' TABLE DATA ' || true)"

  existing="$(sql "$USER_TABLES")" || fail "cannot connect to $target"
  if [ "$existing" -gt 0 ]; then
    say "The database has data: saving it first."
    mkdir -p "$dir"
    dump "$(new_name "before-restore-$database")"
    prune "before-restore-$database"
  fi

  say "Restoring $(basename "$backup_file") ($(human_size "$(file_size "$backup_file")"), $backup_tables tables) into $target"
  restore_started="$(date +%s)"
  # One transaction: a failure leaves the database as it was. Objects end up
  # owned by the user restoring, whoever owned them where the backup was made.
  if ! run_with_progress "$backup_tables" "processing data for table" \
    pg_restore --dbname="$database" --clean --if-exists --no-owner \
    --no-privileges --single-transaction --exit-on-error --verbose "$backup_file"; then
    fail "pg_restore of $(basename "$backup_file") failed; the database was left as it was"
  fi
  say "Restored $(basename "$backup_file") into $target in $(($(date +%s) - restore_started)) s."
}

command="${1:-backup}"
if [ $# -gt 0 ]; then shift; fi
case "$command" in
backup) do_backup ;;
list) do_list ;;
restore) do_restore "$@" ;;
*) fail "unknown command \"$command\"; use backup, list or restore [latest|NAME]" ;;
esac

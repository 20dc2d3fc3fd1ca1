#!/usr/bin/env bash
# Entrypoint of the test-only postgres stand-in. It behaves like the official
# image's docker-entrypoint.sh where this project relies on it:
# - POSTGRES_PASSWORD / POSTGRES_USER (default postgres) / POSTGRES_DB (default:
#   the user) / POSTGRES_INITDB_ARGS, each also as *_FILE (exclusive);
# - initialisation only when PGDATA holds no database (no PG_VERSION);
# - init through a temporary server on the Unix socket only
#   (listen_addresses=''), then the real server from postgresql.conf
#   (listen_addresses='*') with "host all all all <password_encryption>" in
#   pg_hba.conf (scram-sha-256);
# - runs as the postgres user, the server replaces this script (PID 1);
# - a command that starts with "-" is passed to postgres.
set -Eeuo pipefail

# file_env VAR [DEFAULT]: set VAR from $VAR or from the file named by $VAR_FILE.
file_env() {
	local var="$1"
	local file_var="${1}_FILE"
	local value="${2:-}"
	if [[ -n "${!var:-}" && -n "${!file_var:-}" ]]; then
		printf >&2 'error: both %s and %s are set (but are exclusive)\n' "$var" "$file_var"
		exit 1
	fi
	if [[ -n "${!var:-}" ]]; then
		value="${!var}"
	elif [[ -n "${!file_var:-}" ]]; then
		value="$(<"${!file_var}")"
	fi
	export "$var=$value"
	unset "$file_var"
}

# true if the arguments ask postgres for help/version only (no server)
want_help() {
	local arg
	for arg; do
		case "$arg" in
		'-?' | --help | --describe-config | -V | --version) return 0 ;;
		esac
	done
	return 1
}

setup_env() {
	file_env POSTGRES_PASSWORD
	file_env POSTGRES_USER postgres
	file_env POSTGRES_DB "$POSTGRES_USER"
	file_env POSTGRES_INITDB_ARGS
	: "${POSTGRES_HOST_AUTH_METHOD:=}"
	DATABASE_ALREADY_EXISTS=
	if [[ -s "$PGDATA/PG_VERSION" ]]; then
		DATABASE_ALREADY_EXISTS=true
	fi
}

# The 18+ layout: data in /var/lib/postgresql/18/docker, the volume at
# /var/lib/postgresql. Like the official image, refuse to start (rather than
# silently initialise an empty cluster) when something is mounted at, or data
# sits in, the pre-18 place /var/lib/postgresql/data.
refuse_pre_18_layout() {
	local old=/var/lib/postgresql/data
	if [[ -n "$DATABASE_ALREADY_EXISTS" || "$PGDATA" != /var/lib/postgresql/18/docker ]]; then
		return 0
	fi
	if [[ -s "$old/PG_VERSION" ]] || mountpoint -q "$old"; then
		cat >&2 <<-EOE
			Error: in 18+, these Docker images are configured to store database data in
			       a format which is compatible with "pg_ctlcluster" (PGDATA=$PGDATA,
			       one VOLUME at /var/lib/postgresql).

			       Counter to that, there is a mount or PostgreSQL data at:
			         $old

			       Mount the volume at /var/lib/postgresql instead (and use pg_upgrade
			       to move existing data to a new major version).
			       See https://github.com/docker-library/postgres/pull/1259
		EOE
		exit 1
	fi
}

create_db_directories() {
	mkdir -p "$PGDATA"
	chmod 0700 "$PGDATA" || :
	mkdir -p /var/run/postgresql || :
	chmod 03775 /var/run/postgresql || :
	if [[ "$(id -u)" == 0 ]]; then
		find "$PGDATA" \! -user postgres -exec chown postgres '{}' +
		find /var/run/postgresql \! -user postgres -exec chown postgres '{}' +
	fi
}

verify_minimum_env() {
	if [[ -z "$POSTGRES_PASSWORD" && "$POSTGRES_HOST_AUTH_METHOD" != trust ]]; then
		cat >&2 <<-'EOE'
			Error: Database is uninitialized and superuser password is not specified.
			       You must specify POSTGRES_PASSWORD to a non-empty value for the
			       superuser. For example, "-e POSTGRES_PASSWORD=password" on "docker run".

			       You may also use "POSTGRES_HOST_AUTH_METHOD=trust" to allow all
			       connections without a password. This is *not* recommended.

			       See PostgreSQL documentation about "trust":
			       https://www.postgresql.org/docs/current/auth-trust.html
		EOE
		exit 1
	fi
	if [[ "$POSTGRES_HOST_AUTH_METHOD" == trust ]]; then
		cat >&2 <<-'EOW'
			********************************************************************************
			WARNING: POSTGRES_HOST_AUTH_METHOD has been set to "trust". This will allow
			         anyone with access to the Postgres port to access your database without
			         a password, even if POSTGRES_PASSWORD is set.
			********************************************************************************
		EOW
	fi
}

init_database_dir() {
	# The superuser is POSTGRES_USER with POSTGRES_PASSWORD, stored as
	# scram-sha-256 (password_encryption's default). --pwfile refuses an empty
	# file, hence the newline.
	# shellcheck disable=SC2016 # the single-quoted part is expanded by eval
	eval 'initdb --username="$POSTGRES_USER" --pwfile=<(printf "%s\n" "$POSTGRES_PASSWORD") '"$POSTGRES_INITDB_ARGS"' "$@"'
}

# append "host all all all METHOD" (METHOD: POSTGRES_HOST_AUTH_METHOD, else the
# server's password_encryption, i.e. scram-sha-256) to pg_hba.conf
setup_hba_conf() {
	if [[ "$1" == postgres ]]; then
		shift
	fi
	local auth
	auth="$(postgres -C password_encryption "$@")"
	: "${POSTGRES_HOST_AUTH_METHOD:=$auth}"
	{
		printf '\n'
		if [[ "$POSTGRES_HOST_AUTH_METHOD" == trust ]]; then
			printf '# warning trust is enabled for all connections\n'
		fi
		printf 'host all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD"
	} >>"$PGDATA/pg_hba.conf"
}

# psql on the temporary server's Unix socket, as POSTGRES_USER
process_sql() {
	local runner=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc)
	if [[ -n "$POSTGRES_DB" ]]; then
		runner+=(--dbname "$POSTGRES_DB")
	fi
	PGHOST='' PGHOSTADDR='' "${runner[@]}" "$@"
}

temp_server_start() {
	if [[ "$1" == postgres ]]; then
		shift
	fi
	# Unix socket only: nothing outside the container can connect during init.
	set -- "$@" -c listen_addresses='' -p "${PGPORT:-5432}"
	NOTIFY_SOCKET='' PGUSER="${PGUSER:-$POSTGRES_USER}" \
		pg_ctl -D "$PGDATA" -o "$(printf '%q ' "$@")" -w start
}

temp_server_stop() {
	PGUSER="${PGUSER:-postgres}" pg_ctl -D "$PGDATA" -m fast -w stop
}

# create POSTGRES_DB unless it exists (it does when it is "postgres")
setup_db() {
	local db="$POSTGRES_DB" exists
	exists="$(POSTGRES_DB='' process_sql --dbname postgres --set db="$db" \
		--tuples-only <<<"SELECT 1 FROM pg_database WHERE datname = :'db';")"
	if [[ -z "${exists//[[:space:]]/}" ]]; then
		POSTGRES_DB='' process_sql --dbname postgres --set db="$db" \
			<<<'CREATE DATABASE :"db";'
		printf '\n'
	fi
}

process_init_files() {
	local f
	printf '\n'
	for f; do
		case "$f" in
		*.sh)
			if [[ -x "$f" ]]; then
				printf '%s: running %s\n' "$0" "$f"
				"$f"
			else
				printf '%s: sourcing %s\n' "$0" "$f"
				# shellcheck disable=SC1090 # init scripts are the user's
				. "$f"
			fi
			;;
		*.sql)
			printf '%s: running %s\n' "$0" "$f"
			process_sql -f "$f"
			;;
		*.sql.gz)
			printf '%s: running %s\n' "$0" "$f"
			gunzip -c "$f" | process_sql
			;;
		*) printf '%s: ignoring %s\n' "$0" "$f" ;;
		esac
	done
}

main() {
	if [[ "${1:0:1}" == - ]]; then
		set -- postgres "$@"
	fi
	if [[ "$1" == postgres ]] && ! want_help "$@"; then
		setup_env
		refuse_pre_18_layout
		create_db_directories
		if [[ "$(id -u)" == 0 ]]; then
			# run this script again as postgres (no su/sudo: exec, no fork)
			exec setpriv --reuid=postgres --regid=postgres --init-groups \
				"${BASH_SOURCE[0]}" "$@"
		fi
		if [[ -z "$DATABASE_ALREADY_EXISTS" ]]; then
			verify_minimum_env
			ls /docker-entrypoint-initdb.d/ >/dev/null
			init_database_dir
			setup_hba_conf "$@"
			export PGPASSWORD="${PGPASSWORD:-$POSTGRES_PASSWORD}"
			temp_server_start "$@"
			setup_db
			process_init_files /docker-entrypoint-initdb.d/*
			temp_server_stop
			unset PGPASSWORD
			printf '\nPostgreSQL init process complete; ready for start up.\n\n'
		else
			printf '\nPostgreSQL Database directory appears to contain a database; Skipping initialization\n\n'
		fi
	fi
	exec "$@"
}

main "$@"

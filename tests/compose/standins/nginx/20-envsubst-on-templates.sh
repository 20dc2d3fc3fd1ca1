#!/bin/sh
# Like the official image's hook of this name: render every
# $NGINX_ENVSUBST_TEMPLATE_DIR/**/*$NGINX_ENVSUBST_TEMPLATE_SUFFIX into
# $NGINX_ENVSUBST_OUTPUT_DIR (same relative path, suffix dropped) with envsubst,
# substituting ONLY variables defined in the environment whose names match the
# regex NGINX_ENVSUBST_FILTER, so nginx's own $host etc. survive.
set -e

ME=$(basename "$0")

entrypoint_log() {
    if [ -z "${NGINX_ENTRYPOINT_QUIET_LOGS:-}" ]; then
        echo "$@"
    fi
}

template_dir="${NGINX_ENVSUBST_TEMPLATE_DIR:-/etc/nginx/templates}"
suffix="${NGINX_ENVSUBST_TEMPLATE_SUFFIX:-.template}"
output_dir="${NGINX_ENVSUBST_OUTPUT_DIR:-/etc/nginx/conf.d}"

[ -d "$template_dir" ] || exit 0
if [ ! -w "$output_dir" ]; then
    entrypoint_log "$ME: ERROR: $template_dir exists, but $output_dir is not writable"
    exit 0
fi

# "${A} ${B} ..." for every defined variable whose name matches the filter
# (an empty filter matches all); envsubst replaces only those.
# shellcheck disable=SC2016 # ${%s} is envsubst syntax printed by awk
defined_envs=$(awk 'END {
    filter = ENVIRON["NGINX_ENVSUBST_FILTER"]
    for (name in ENVIRON) if (name ~ filter) printf "${%s} ", name
}' </dev/null)

find "$template_dir" -follow -type f -name "*$suffix" -print | while read -r template; do
    relative_path="${template#"$template_dir/"}"
    output_path="$output_dir/${relative_path%"$suffix"}"
    subdir=$(dirname "$relative_path")
    mkdir -p "$output_dir/$subdir"
    entrypoint_log "$ME: Running envsubst on $template to $output_path"
    envsubst "$defined_envs" <"$template" >"$output_path"
done

exit 0

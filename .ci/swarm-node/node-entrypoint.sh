#!/bin/sh
# Start the node's Docker engine as the container's main process.
set -eu

# A node killed and started again keeps its root file system: the pid files
# of the engine that was killed would stop this one from starting.
rm -f /var/run/docker.pid /run/docker/containerd/containerd.pid

# The node's containers go below the node's own cgroup, so the outer engine's
# `docker stats` and limits on the node count its whole workload.
cgroup=$(awk -F: '$2 ~ /(^|,)memory(,|$)/ { print $3 }' /proc/self/cgroup)
if [ -z "$cgroup" ]; then
    cgroup=$(awk -F: '$1 == "0" { print $3 }' /proc/self/cgroup)
fi

# The second socket is in a directory the outer host mounts: the tests drive
# this engine with DOCKER_HOST=unix://<that directory>/docker.sock.
exec dockerd \
    --host unix:///var/run/docker.sock \
    --host "unix://${NODE_OUTER_SOCKET_DIR:-/run/outer}/docker.sock" \
    --cgroup-parent "${cgroup%/}/inner" \
    "$@"

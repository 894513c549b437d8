#!/bin/sh
# Installs the HTTP benchmark's peers from Debian packages when they are missing, then prints
# where they are as KEY=VALUE lines on stdout (read by bench/http_api.py):
#   WRK=/usr/bin/wrk
#   PG_BIN=/usr/lib/postgresql/<version>/bin   (the newest installed version)
# Needs root (or sudo) only when something must be installed. Exit status 1 when a peer is
# still missing afterwards. Nothing is installed by hand: `make bench-http` runs this script.
# `sh bench/peers.sh redis` does the same for the topics benchmark's peer (bench/topics.py)
# instead, and prints REDIS_SERVER=/usr/bin/redis-server.
set -eu

install_debian() {
    echo "peers.sh: installing from Debian packages: $*" >&2
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    # `update` only when the install fails with the cached package lists.
    $SUDO apt-get install -y -q "$@" >&2 || {
        $SUDO apt-get update -q >&2
        $SUDO apt-get install -y -q "$@" >&2
    }
}

if [ "${1:-}" = "redis" ]; then
    command -v redis-server >/dev/null 2>&1 || install_debian redis-server
    redis_path=$(command -v redis-server || true)
    if [ -z "$redis_path" ]; then
        echo "peers.sh: redis-server is still missing after apt-get install" >&2
        exit 1
    fi
    echo "REDIS_SERVER=$redis_path"
    exit 0
fi

need=""
command -v wrk >/dev/null 2>&1 || need="$need wrk"
ls -d /usr/lib/postgresql/*/bin/pgbench >/dev/null 2>&1 || need="$need postgresql"

if [ -n "$need" ]; then
    echo "peers.sh: installing from Debian packages:$need" >&2
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    # `update` only when the install fails with the cached package lists.
    $SUDO apt-get install -y -q $need >&2 || {
        $SUDO apt-get update -q >&2
        $SUDO apt-get install -y -q $need >&2
    }
fi

wrk_path=$(command -v wrk || true)
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$wrk_path" ] || [ -z "$pg_bin" ] || [ ! -x "$pg_bin/pgbench" ]; then
    echo "peers.sh: wrk or PostgreSQL is still missing after apt-get install" >&2
    exit 1
fi
echo "WRK=$wrk_path"
echo "PG_BIN=$pg_bin"

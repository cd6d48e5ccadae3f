#!/usr/bin/env bash
# PostgreSQL for `hashpool up --profile cluster` (a role the supervisor starts, watches and
# stops): Debian's server binaries on a data directory of the run's own, listening on
# 127.0.0.1 only, with the `hashpool` role and the databases of the pools' shared ledger, the
# mint and the stats services made on the first start. Stopped with SIGTERM (the supervisor's),
# it shuts down fast (open sessions are ended; what was committed is kept).
#
# Usage: scripts/cluster-postgres.sh [DATA_DIR] [PORT]   (defaults .hashpool/data/postgres 5433)
# Needs Debian's postgresql package: scripts/setup.sh installs it.
set -euo pipefail
data="${1:-.hashpool/data/postgres}"
port="${2:-5433}"
databases=(hashpool_ledger hashpool_mint hashpool_stats_pool hashpool_stats_proxy)

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$bin" ] || [ ! -x "$bin/postgres" ]; then
    echo "cluster-postgres: Debian's PostgreSQL server is not installed (run scripts/setup.sh)" >&2
    exit 1
fi

# The server refuses to run as root: as root it runs as the `postgres` system user (the
# package makes it), which then owns the data directory.
as_server=()
if [ "$(id -u)" -eq 0 ]; then
    as_server=(setpriv --reuid=postgres --regid=postgres --init-groups --)
fi

mkdir -p "$data"
data=$(cd "$data" && pwd)
if [ "$(id -u)" -eq 0 ]; then
    chown postgres:postgres "$data"
fi
chmod 700 "$data"

if [ ! -s "$data/PG_VERSION" ]; then
    echo "cluster-postgres: creating the cluster in $data" >&2
    pwfile=$(mktemp)
    echo hashpool >"$pwfile"
    chmod 644 "$pwfile"
    "${as_server[@]}" "$bin/initdb" -D "$data" -U hashpool --pwfile="$pwfile" \
        --auth-local=scram-sha-256 --auth-host=scram-sha-256 -E UTF8 >&2
    rm -f "$pwfile"
    for db in "${databases[@]}"; do
        echo "CREATE DATABASE $db;" |
            "${as_server[@]}" "$bin/postgres" --single -D "$data" postgres >/dev/null
    done
fi

"${as_server[@]}" "$bin/postgres" -D "$data" -p "$port" \
    -c listen_addresses=127.0.0.1 -c unix_socket_directories="$data" &
server=$!
# SIGTERM to the server is a "smart" shutdown that waits for every session to end; SIGINT is
# the fast one.
trap 'kill -INT "$server" 2>/dev/null' TERM INT
wait "$server" || true
wait "$server" 2>/dev/null || true

#!/usr/bin/env bash
# Starts Debian's PostgreSQL (installing it if missing) with a `hashpool` role that may create
# databases, and prints the URL for HASHPOOL_TEST_POSTGRES_URL: the stats store's PostgreSQL
# test creates and drops a database of its own under it. Run as root (CI) or with sudo.
set -euo pipefail
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if ! command -v pg_lsclusters >/dev/null 2>&1; then
    $SUDO apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends postgresql >&2
fi
if [ -z "$(pg_lsclusters -h)" ]; then
    version=$(ls /usr/lib/postgresql | sort -V | tail -1)
    $SUDO pg_createcluster "$version" main >&2
fi
read -r version name port _ < <(pg_lsclusters -h | head -1)
$SUDO pg_ctlcluster "$version" "$name" start >&2 2>/dev/null || true
for _ in $(seq 1 50); do
    $SUDO runuser -u postgres -- pg_isready -q -p "$port" && break
    sleep 0.2
done
$SUDO runuser -u postgres -- psql -q -p "$port" -v ON_ERROR_STOP=1 >&2 <<'SQL'
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'hashpool') THEN
    CREATE ROLE hashpool LOGIN CREATEDB PASSWORD 'hashpool';
  END IF;
END $$;
SQL
echo "postgres://hashpool:hashpool@127.0.0.1:$port/postgres"

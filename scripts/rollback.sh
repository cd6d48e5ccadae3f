#!/usr/bin/env bash
# Points /opt/hashpool/current back at an earlier release installed by scripts/install.sh, and
# lists the releases. docs/deployment.md, "Rollback".
#
#   sudo scripts/rollback.sh [--to VERSION] [--root DIR]
#   scripts/rollback.sh --list [--root DIR]
#
# --to VERSION  the release to run (default: the one that was current before the last switch,
#               /opt/hashpool/previous; rolling back twice returns to where you started)
# --list        only list the releases
# --root DIR    the tree install.sh wrote under --root DIR (default /)
#
# It switches the link atomically and does not restart anything: run
# `systemctl restart hashpool.target` afterwards. Configs, keys and data are not touched; a
# release whose database migrations are newer than the target release's cannot be rolled back
# this way (restore the backups taken before the upgrade).
set -euo pipefail

die() {
    echo "rollback.sh: error: $*" >&2
    exit 1
}
usage() {
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
}

ROOT=/
TO=""
LIST_ONLY=0
while [ $# -gt 0 ]; do
    case $1 in
        --root) [ $# -ge 2 ] || die "--root needs a directory"; ROOT=$2; shift 2 ;;
        --root=*) ROOT=${1#*=}; shift ;;
        --to) [ $# -ge 2 ] || die "--to needs a release name"; TO=$2; shift 2 ;;
        --to=*) TO=${1#*=}; shift ;;
        --list) LIST_ONLY=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

if [ -z "$ROOT" ] || [ ! -d "$ROOT" ]; then die "--root '$ROOT': no such directory"; fi
ROOT=$(cd "$ROOT" && pwd -P)
if [ "$ROOT" = / ]; then P=""; else P=$ROOT; fi
BASE=$P/opt/hashpool
RELEASES=$BASE/releases
CURRENT=$BASE/current
PREVIOUS=$BASE/previous
[ -d "$RELEASES" ] || die "$RELEASES does not exist: nothing was installed with scripts/install.sh"

link_name() { # link -> release name, or nothing
    if [ -L "$1" ]; then basename "$(readlink "$1")"; fi
}

list() {
    local cur prev name mark
    cur=$(link_name "$CURRENT")
    prev=$(link_name "$PREVIOUS")
    echo "releases in $RELEASES (newest first):"
    # Newest first by the time each release directory last changed (install.sh writes into it).
    while IFS= read -r name; do
        mark=""
        [ "$name" = "$cur" ] && mark="  <- current"
        [ "$name" = "$prev" ] && mark="  <- previous"
        echo "  $name$mark"
    done < <(find "$RELEASES" -mindepth 1 -maxdepth 1 -type d -printf '%T@ %f\n' | sort -rn | cut -d' ' -f2-)
}

if [ "$LIST_ONLY" = 1 ]; then
    list
    exit 0
fi

if [ "$ROOT" = / ] && [ "$(id -u)" -ne 0 ]; then
    die "switching the release under / needs root: run it with sudo"
fi

cur=$(link_name "$CURRENT")
[ -n "$cur" ] || die "$CURRENT is not a link to a release"
if [ -z "$TO" ]; then
    TO=$(link_name "$PREVIOUS")
    if [ -z "$TO" ] || [ "$TO" = "$cur" ]; then
        # No record of the previous release: take the newest other one.
        TO=$(find "$RELEASES" -mindepth 1 -maxdepth 1 -type d ! -name "$cur" -printf '%T@ %f\n' |
            sort -rn | head -n 1 | cut -d' ' -f2-)
    fi
    [ -n "$TO" ] || die "no release other than $cur to go back to"
fi
case $TO in */* | . | ..) die "bad release name '$TO'" ;; esac
[ -d "$RELEASES/$TO" ] || { list >&2; die "no release named '$TO'"; }
[ -x "$RELEASES/$TO/bin/pool" ] || die "$RELEASES/$TO/bin has no pool binary: not a complete release"
if [ "$TO" = "$cur" ]; then
    echo "==> $TO is already current; nothing to do"
    list
    exit 0
fi

# The release we leave becomes `previous`, so a second rollback comes back here.
ln -sfn "releases/$cur" "$BASE/.previous.new"
mv -f -T "$BASE/.previous.new" "$PREVIOUS"
ln -sfn "releases/$TO" "$BASE/.current.new"
mv -f -T "$BASE/.current.new" "$CURRENT"

echo "==> current -> releases/$TO (was releases/$cur)"
list
echo
echo "Now run it: systemctl restart hashpool.target"

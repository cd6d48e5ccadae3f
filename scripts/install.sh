#!/usr/bin/env bash
# Installs (or upgrades) Hashpool on a Debian server, for systemd: docs/deployment.md.
#
#   sudo scripts/install.sh [--bin-dir DIR] [--version V] [--root DIR]
#
# --bin-dir DIR  prebuilt release binaries (default: build them here with
#                `cargo build --release --locked` and take ${CARGO_TARGET_DIR:-target}/release)
# --version V    name of the release (default: `git describe --always --dirty`, else the date)
# --root DIR     write everything under DIR instead of / (a trial tree: no user is created,
#                no ownership changed, systemctl is not called)
#
# What it does, every time (running it again is how you upgrade; it is idempotent):
#   - the system user and group `hashpool` (no login shell, home /var/lib/hashpool);
#   - the binaries into /opt/hashpool/releases/V/bin, then /opt/hashpool/current -> that release
#     (switched atomically; older releases stay for scripts/rollback.sh);
#   - the configs of config/prod into /etc/hashpool, and scripts/systemd/hashpool.env, ONLY where
#     missing: an operator's file is never overwritten;
#   - the keys, with `hashpool keys`: created only where missing, never replaced;
#   - the systemd units and the target (these are replaced; the roles log to the journal), and
#     the journald drop-in that keeps the journal on disk, ONLY where missing; the logrotate
#     file of releases that logged to /var/log/hashpool is removed;
#   - then `systemctl daemon-reload`. It never starts, stops or restarts a service.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd -P)

# Binaries of a release.
REQUIRED_BINS=(pool mint translator jd-server jd-client stats-pool stats-proxy web-pool web-proxy hashpool)
# One data directory (/var/lib/hashpool/<name>) per unit.
DATA_DIRS=(pool mint translator jd-server jd-client stats-pool stats-proxy web-pool web-proxy bitcoind)
# Roles whose secret `hashpool keys` writes to /etc/hashpool/keys/<role>.env.
KEYED_ROLES=(pool mint translator stats-pool stats-proxy jd-server jd-client)
PLACEHOLDER_SCRIPT="raw(00140000000000000000000000000000000000000000)"
SRI_TEST_KEY="9auqWEzQDVyd2oe1JVGFLMLHZtCo2FFqZwtKA5gd9xbuEu7PH72"

say() { echo "==> $*"; }
warn() { echo "install.sh: warning: $*" >&2; }
die() {
    echo "install.sh: error: $*" >&2
    exit 1
}
trap 'echo "install.sh: error: \`$BASH_COMMAND\` failed (line $LINENO)" >&2' ERR

usage() {
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
}

ROOT=/
BIN_DIR=""
VERSION=""
while [ $# -gt 0 ]; do
    case $1 in
        --root) [ $# -ge 2 ] || die "--root needs a directory"; ROOT=$2; shift 2 ;;
        --root=*) ROOT=${1#*=}; shift ;;
        --bin-dir) [ $# -ge 2 ] || die "--bin-dir needs a directory"; BIN_DIR=$2; shift 2 ;;
        --bin-dir=*) BIN_DIR=${1#*=}; shift ;;
        --version) [ $# -ge 2 ] || die "--version needs a value"; VERSION=$2; shift 2 ;;
        --version=*) VERSION=${1#*=}; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

# ---- where to -----------------------------------------------------------------------------
if [ -z "$ROOT" ] || [ ! -d "$ROOT" ]; then die "--root '$ROOT': no such directory"; fi
ROOT=$(cd "$ROOT" && pwd -P)
if [ "$ROOT" = / ]; then
    LIVE=1
    P=""
    [ "$(id -u)" -eq 0 ] || die "installing to / needs root: run it with sudo (or try it in a scratch tree with --root DIR)"
else
    LIVE=0
    P=$ROOT
fi

# ---- what: sources and binaries -----------------------------------------------------------
SRC_CONF=$REPO/config/prod
SRC_UNITS=$REPO/scripts/systemd
SRC_JOURNALD=$REPO/scripts/systemd/journald-hashpool.conf
for f in "$SRC_CONF/pool.config.toml" "$SRC_CONF/shared/pool.toml" "$SRC_CONF/shared/proxy.toml" \
    "$SRC_UNITS/hashpool.env" "$SRC_UNITS/hashpool.target" "$SRC_UNITS/hashpool-pool.service" \
    "$SRC_JOURNALD"; do
    [ -f "$f" ] || die "$f is missing: run install.sh from a complete Hashpool checkout"
done

if [ -z "$BIN_DIR" ]; then
    command -v cargo >/dev/null 2>&1 || die "cargo not found, and no --bin-dir given. Build as your
  own user (cargo build --release --locked), then: sudo scripts/install.sh --bin-dir target/release"
    say "building the release binaries (cargo build --release --locked)"
    (cd "$REPO" && cargo build --release --locked)
    target=${CARGO_TARGET_DIR:-target}
    case $target in /*) ;; *) target=$REPO/$target ;; esac
    BIN_DIR=$target/release
fi
[ -d "$BIN_DIR" ] || die "binary directory '$BIN_DIR' does not exist (build first: cargo build --release --locked)"
BIN_DIR=$(cd "$BIN_DIR" && pwd -P)
missing=()
for b in "${REQUIRED_BINS[@]}"; do
    [ -f "$BIN_DIR/$b" ] && [ -x "$BIN_DIR/$b" ] || missing+=("$b")
done
[ ${#missing[@]} -eq 0 ] || die "not in $BIN_DIR (or not executable): ${missing[*]}"

if [ -z "$VERSION" ]; then
    VERSION=$(git -C "$REPO" describe --always --dirty 2>/dev/null || true)
    [ -n "$VERSION" ] || VERSION=$(date -u +%Y%m%d-%H%M%S)
fi
[[ $VERSION =~ ^[A-Za-z0-9][A-Za-z0-9._+-]*$ ]] ||
    die "release name '$VERSION' may hold only letters, digits and . _ + - (and start with a letter or digit)"

say "installing release $VERSION from $BIN_DIR into ${P:-/}"

# Ownership applies only to a live install; a trial tree (--root) is left to the caller.
own() { # owner:group path...
    [ "$LIVE" = 1 ] || return 0
    chown -h "$@"
}
dir() { # mode owner:group path
    install -d "$3"
    chmod "$1" "$3"
    own "$2" "$3"
}

# ---- (a) the user ---------------------------------------------------------------------------
if [ "$LIVE" = 1 ]; then
    if ! getent group hashpool >/dev/null; then
        groupadd --system hashpool
        say "created system group hashpool"
    fi
    if ! getent passwd hashpool >/dev/null; then
        useradd --system --gid hashpool --home-dir /var/lib/hashpool --no-create-home \
            --shell /usr/sbin/nologin --comment "Hashpool" hashpool
        say "created system user hashpool"
    fi
else
    say "--root $ROOT: a trial tree, so no user is created, no ownership changed, systemctl not called"
fi

# ---- (b) directories ------------------------------------------------------------------------
REL=$P/opt/hashpool/releases/$VERSION
CURRENT=$P/opt/hashpool/current
PREVIOUS=$P/opt/hashpool/previous
if [ -e "$CURRENT" ] && [ ! -L "$CURRENT" ]; then
    die "$CURRENT exists and is not a symbolic link: move it away and run this again"
fi
dir 0755 root:root "$P/opt/hashpool"
dir 0755 root:root "$P/opt/hashpool/releases"
dir 0755 root:root "$REL"
dir 0755 root:root "$REL/bin"
dir 0750 root:hashpool "$P/etc/hashpool"
dir 0750 root:hashpool "$P/etc/hashpool/shared"
dir 0700 root:root "$P/etc/hashpool/keys"
dir 0750 hashpool:hashpool "$P/var/lib/hashpool"
for d in "${DATA_DIRS[@]}"; do
    dir 0750 hashpool:hashpool "$P/var/lib/hashpool/$d"
done
for d in "$P/etc/systemd/system" "$P/etc/systemd/journald.conf.d"; do
    [ -d "$d" ] || install -d -m 0755 "$d"
done

# ---- (c) binaries (the `current` link moves only once configs and keys are in place) ----------
installed=()
for b in "${REQUIRED_BINS[@]}"; do
    # A rename, never a write into a binary that may be running.
    install -m 0755 "$BIN_DIR/$b" "$REL/bin/.$b.new"
    mv -f "$REL/bin/.$b.new" "$REL/bin/$b"
    installed+=("$b")
done
say "binaries in $REL/bin: ${installed[*]}"

# ---- (d) configs: only where missing ----------------------------------------------------------
added=()
kept=()
config_file() { # source destination
    if [ -e "$2" ]; then
        if cmp -s "$1" "$2"; then kept+=("$2"); else kept+=("$2 (differs from ${1#"$REPO"/})"); fi
    else
        install -m 0640 "$1" "$2"
        added+=("$2")
    fi
}
for f in "$SRC_CONF"/*.toml; do
    config_file "$f" "$P/etc/hashpool/$(basename "$f")"
done
for f in "$SRC_CONF"/shared/*.toml; do
    config_file "$f" "$P/etc/hashpool/shared/$(basename "$f")"
done
config_file "$SRC_UNITS/hashpool.env" "$P/etc/hashpool/hashpool.env"
for f in "${added[@]}"; do say "config added: $f"; done
for f in "${kept[@]}"; do say "config kept (never overwritten): $f"; done
if [ ${#kept[@]} -gt 0 ]; then
    echo "    New settings of a release show in config/prod/; compare, e.g.:"
    echo "    diff -u $REPO/config/prod/pool.config.toml ${P}/etc/hashpool/pool.config.toml"
fi

# ---- (e) keys ---------------------------------------------------------------------------------
say "keys: hashpool keys (creates what is missing, never replaces a secret)"
(umask 077 && "$BIN_DIR/hashpool" keys --config-dir "$P/etc/hashpool" --data-dir "$P/var/lib/hashpool") ||
    die "\`hashpool keys\` failed (its message is above); the current release was not switched"
for r in "${KEYED_ROLES[@]}"; do
    f=$P/etc/hashpool/keys/$r.env
    [ -f "$f" ] || die "\`hashpool keys\` did not create $f"
    chmod 0600 "$f"
    own root:root "$f"
done
mnemonic=$P/var/lib/hashpool/translator/mnemonic
if [ -f "$mnemonic" ]; then
    chmod 0600 "$mnemonic"
else
    warn "$mnemonic was not created; the translator creates it at its first start"
fi
# The bearer token of the translator's wallet API spending routes (create a token, faucet).
# Created here when missing, so web-proxy (which sends it, through a read-only bind of this file
# alone: hashpool-web-proxy.service) finds it from its first start; never replaced.
token=$P/var/lib/hashpool/translator/wallet-api-token
if [ ! -f "$token" ]; then
    (umask 077 && od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$token.new" &&
        echo >>"$token.new" && mv "$token.new" "$token") || die "cannot create $token"
    say "wallet API token created: $token"
fi
chmod 0600 "$token"
own hashpool:hashpool "$token"
# The configs are read by the roles (user hashpool), whoever wrote them last.
for f in "$P"/etc/hashpool/*.toml "$P"/etc/hashpool/shared/*.toml "$P/etc/hashpool/hashpool.env"; do
    [ -f "$f" ] || continue
    chmod 0640 "$f"
    own root:hashpool "$f"
done

# ---- the `current` link: the new release, atomically ----------------------------------------
new_target=releases/$VERSION
old_target=""
if [ -L "$CURRENT" ]; then
    old_target=$(readlink "$CURRENT")
fi
if [ -n "$old_target" ] && [ "$old_target" != "$new_target" ]; then
    ln -sfn "$old_target" "$P/opt/hashpool/.previous.new"
    mv -f -T "$P/opt/hashpool/.previous.new" "$PREVIOUS"
fi
# Relative links, so that the tree also works under --root.
ln -sfn "$new_target" "$P/opt/hashpool/.current.new"
mv -f -T "$P/opt/hashpool/.current.new" "$CURRENT"
if [ -z "$old_target" ]; then
    say "current -> $new_target (first release)"
elif [ "$old_target" = "$new_target" ]; then
    say "current -> $new_target (same release, binaries refreshed)"
else
    say "current -> $new_target (was $old_target; scripts/rollback.sh goes back)"
fi

# ---- (f) units, the journal -------------------------------------------------------------------
for u in "$SRC_UNITS"/*.service "$SRC_UNITS"/hashpool.target; do
    install -m 0644 "$u" "$P/etc/systemd/system/$(basename "$u")"
done
say "units and hashpool.target in ${P}/etc/systemd/system (the roles log to the journal)"
journald_added=0
journald_conf=$P/etc/systemd/journald.conf.d/hashpool.conf
if [ -e "$journald_conf" ]; then
    say "journald drop-in kept (never overwritten): $journald_conf"
else
    install -m 0644 "$SRC_JOURNALD" "$journald_conf"
    journald_added=1
    say "journald drop-in added: $journald_conf (journal kept on disk, size bounded)"
fi
# Releases before this one appended the logs to /var/log/hashpool/<role>.log, rotated by
# /etc/logrotate.d/hashpool: the file is ours and rotates nothing now. The old logs stay.
if [ -e "$P/etc/logrotate.d/hashpool" ]; then
    rm -f "$P/etc/logrotate.d/hashpool"
    say "removed ${P}/etc/logrotate.d/hashpool (the roles log to the journal now; the old files in ${P}/var/log/hashpool/ are left to you)"
fi

# ---- (g) ownership, systemd -----------------------------------------------------------------
if [ "$LIVE" = 1 ]; then
    # Anything `hashpool keys` or an operator left owned by root under the data directory.
    find /var/lib/hashpool -xdev \( ! -user hashpool -o ! -group hashpool \) \
        -exec chown -h hashpool:hashpool {} +
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        systemctl daemon-reload
        say "systemctl daemon-reload done"
    else
        warn "systemd is not running here: run \`systemctl daemon-reload\` once it is"
    fi
fi

# ---- what next ------------------------------------------------------------------------------
C=${P}/etc/hashpool
echo
say "installed release $VERSION. Nothing was started or restarted."
if grep -qF "$PLACEHOLDER_SCRIPT" "$C/pool.config.toml"; then
    echo "  - Set your payout script: pool.coinbase_reward_script in $C/pool.config.toml"
    echo "    (it is still the unspendable placeholder), and the same descriptor as"
    echo "    jd_server.coinbase_reward_script in $C/jd-server.config.toml."
fi
if grep -qF "$SRI_TEST_KEY" "$C/pool.config.toml"; then
    echo "  - Pin sv2-tp's key: start the node and sv2-tp"
    echo "      systemctl enable --now hashpool-bitcoind hashpool-sv2-tp"
    echo "    then put the key that sv2-tp printed"
    echo "      journalctl -u hashpool-sv2-tp | grep 'Template Provider authority key' | tail -n 1"
    echo "    into template_provider.authority_public_key in $C/pool.config.toml."
fi
if [ "$journald_added" = 1 ]; then
    echo "  - Keep the journal on disk from now on: systemctl restart systemd-journald"
fi
if [ -z "$old_target" ]; then
    echo "  - Start everything:    systemctl enable --now hashpool.target"
elif [ "$old_target" != "$new_target" ]; then
    echo "  - Run the new release: systemctl restart hashpool.target"
    echo "    (back to $old_target: scripts/rollback.sh, then the same restart)"
fi
echo "  - Miners declaring their own jobs run hashpool-jd-client next to their own node and"
echo "    sv2-tp: set [pool] and [jd_server] in $C/jd-client.config.toml (docs/job-declaration.md)."
echo "  - Health checks, firewall, backups: docs/deployment.md"

#!/usr/bin/env bash
# Builds the Debian package and tests it on this machine: the unit verifies, the package installs, the
# binary runs from PATH, the user, config and data directory are there, the server starts as its user
# with the packaged config and answers /readyz, `dpkg -r` keeps the user, the config and the data,
# `dpkg -P` deletes them. Works without systemd as PID 1 (a container): the maintainer scripts then skip
# systemctl, and the server is started by hand instead of by the unit.
#
#   sudo scripts/test-deb.sh            # needs root, cargo-deb (cargo install cargo-deb --locked), curl
#
# It refuses to run when alarm-center is installed or /var/lib/alarm-center exists: it purges the
# package at the end. The test server's ports: DEVICE_PORT and API_PORT (default: free ones).
# Not part of `cargo test`. Exits non-zero at the first failed check.
set -euo pipefail
cd "$(dirname "$0")/.."

# Free ports chosen by the kernel unless given (other servers may run on this machine).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
DEVICE_PORT=${DEVICE_PORT:-$(free_port)}
API_PORT=${API_PORT:-$(free_port)}
CONFIG=/etc/alarm-center/config.toml
DATA=/var/lib/alarm-center
checks=0
server_pid=

say() { printf '\n== %s\n' "$*"; }
ok() {
    checks=$((checks + 1))
    printf '   ok: %s\n' "$*"
}
fail() {
    printf 'FAIL: %s\n' "$*" >&2
    exit 1
}
cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'printf "FAIL: line %s: %s (exit %s); clean up with: dpkg -P alarm-center\n" "$LINENO" "$BASH_COMMAND" "$?" >&2' ERR
as_service_user() { runuser -u alarm-center -- "$@"; }

say "preconditions"
[ "$(id -u)" = 0 ] || fail "run as root (dpkg -i, runuser, setpriv)"
cargo deb --version >/dev/null 2>&1 || fail "cargo-deb is missing: cargo install cargo-deb --locked"
for tool in curl dpkg python3 systemd-analyze runuser setpriv; do
    command -v "$tool" >/dev/null || fail "$tool is missing"
done
if dpkg-query -W -f='${Status}' alarm-center 2>/dev/null | grep -qv 'not-installed'; then
    fail "the alarm-center package is installed: this script purges it at the end; remove it first"
fi
[ ! -e "$DATA" ] || fail "$DATA exists: this script's purge would delete it; move it away first"
! getent passwd alarm-center >/dev/null || fail "the user alarm-center exists already"
if [ -d /run/systemd/system ]; then systemd=yes; else systemd=no; fi
ok "root, cargo-deb $(cargo deb --version 2>&1 | awk '{print $NF}'), no alarm-center installed; systemd running: $systemd"
packaging/debian/make-config.sh --check >/dev/null
ok "packaging/debian/config.toml is docs/config.example.toml with the packaging changes (make-config.sh --check)"

say "build: cargo deb -p alarm-center"
built=$(cargo deb -p alarm-center -- --locked)
deb=$(printf '%s\n' "$built" | grep '\.deb$' | tail -n 1)
dbgsym=$(printf '%s\n' "$built" | grep '\.ddeb$' | tail -n 1)
[ -f "$deb" ] || fail "cargo deb printed no package path (got: $built)"
ok "built $deb ($(du -h "$deb" | cut -f1)) and its debug symbols ${dbgsym:-(none)}"
contents=$(dpkg-deb --contents "$deb")
printf '%s\n' "$contents" | awk '{print "     " $1, $2, $NF}'
for path in ./usr/bin/alarm-center ./etc/alarm-center/config.toml alarm-center.service; do
    printf '%s\n' "$contents" | grep -q -- "$path\$" || fail "$path is not in the package"
done
ok "the package holds the binary, the config and the unit"
[ -n "$dbgsym" ] && [ -f "$dbgsym" ] || fail "no -dbgsym package"
dpkg-deb --contents "$dbgsym" | grep -q '\./usr/lib/debug/.build-id/.*\.debug$' \
    || fail "the -dbgsym package holds no .build-id debug file"
ok "the binary is stripped; its debug symbols are in $(basename "$dbgsym")"
if command -v lintian >/dev/null; then
    # no-changelog: a package built from a checkout has no Debian changelog to ship.
    lintian_out=$(lintian --tag-display-limit 0 "$deb" 2>&1 | grep -v 'running with root privileges' || true)
    printf '%s\n' "$lintian_out" | sed 's/^/     lintian: /'
    printf '%s\n' "$lintian_out" | grep '^E: ' | grep -qv ' no-changelog ' && fail "lintian reports errors"
    ok "lintian: no error but no-changelog"
else
    echo "     (lintian is not installed: not run)"
fi
dpkg-deb --field "$deb" Package Version Architecture Depends Recommends | sed 's/^/     /'

say "install: dpkg -i"
dpkg -i "$deb"
ok "dpkg -i succeeded"
unit=$(dpkg -L alarm-center | grep '/systemd/system/alarm-center\.service$')
ok "unit installed as $unit"

say "the unit: systemd-analyze verify"
verify=$(systemd-analyze verify "$unit" 2>&1) || {
    printf '%s\n' "$verify" >&2
    fail "systemd-analyze verify $unit"
}
[ -z "$verify" ] || printf '%s\n' "$verify" | sed 's/^/     /'
ok "systemd-analyze verify $unit: no error"
if security=$(systemd-analyze security --offline=true "$unit" 2>&1); then
    printf '%s\n' "$security" | tail -n 1 | sed 's/^/     /'
    ok "systemd-analyze security --offline=true ran (exposure above)"
else
    echo "     (systemd-analyze security --offline=true is not available here: not checked)"
fi

say "binary, user, config, data directory"
[ "$(command -v alarm-center)" = /usr/bin/alarm-center ] || fail "alarm-center on PATH is $(command -v alarm-center)"
version=$(alarm-center --version)
ok "alarm-center --version from PATH (/usr/bin/alarm-center): $version"
user=$(getent passwd alarm-center) || fail "no user alarm-center"
uid=$(printf '%s' "$user" | cut -d: -f3)
[ "$uid" -lt 1000 ] || fail "alarm-center is not a system user (uid $uid)"
printf '%s' "$user" | grep -q ':/usr/sbin/nologin$' || fail "alarm-center has a login shell: $user"
getent group alarm-center >/dev/null || fail "no group alarm-center"
ok "system user and group alarm-center: $user"
[ -f "$CONFIG" ] || fail "$CONFIG is missing"
[ "$(stat -c '%a %U:%G' "$CONFIG")" = "640 root:alarm-center" ] \
    || fail "$CONFIG is $(stat -c '%a %U:%G' "$CONFIG"), not 640 root:alarm-center"
dpkg-query -W -f='${Conffiles}\n' alarm-center | grep -q " $CONFIG " || fail "$CONFIG is not a conffile"
ok "$CONFIG: a conffile, 640 root:alarm-center"
[ "$(stat -c '%a %U:%G' "$DATA")" = "750 alarm-center:alarm-center" ] \
    || fail "$DATA is $(stat -c '%a %U:%G' "$DATA")"
ok "$DATA: 750 alarm-center:alarm-center"
check=$(cd / && as_service_user alarm-center config check --config "$CONFIG")
printf '     %s\n' "$check"
printf '%s' "$check" | grep -q "store:    $DATA/alarm-center.db" || fail "the packaged config's data dir is not $DATA"
ok "config check as alarm-center: the packaged config is valid and its data dir is $DATA"
if [ "$systemd" = yes ]; then
    systemctl is-enabled alarm-center || fail "the unit is not enabled"
    systemctl is-active alarm-center || fail "the unit is not running"
    ok "the unit is enabled and running"
    systemctl stop alarm-center
else
    [ -L /etc/systemd/system/multi-user.target.wants/alarm-center.service ] \
        || fail "the unit is not enabled (no multi-user.target.wants link)"
    ok "the unit is enabled (multi-user.target.wants link; not started: systemd is not running here)"
fi

say "serve as alarm-center with the packaged config (devices on :$DEVICE_PORT, API on :$API_PORT)"
log=$(mktemp)
# setpriv, not runuser, for the server: it execs the command, so the signal and the exit status below
# are the server's own (runuser stays in between, answers SIGTERM with "Session terminated" and 143).
(cd / && exec env ALARM_CENTER_API__LISTEN="127.0.0.1:$API_PORT" \
    setpriv --reuid=alarm-center --regid=alarm-center --init-groups \
    alarm-center serve --config "$CONFIG" --listen "127.0.0.1:$DEVICE_PORT") >"$log" 2>&1 &
server_pid=$!
ready=
for _ in $(seq 1 100); do
    if ready=$(curl -fsS "http://127.0.0.1:$API_PORT/readyz" 2>/dev/null); then break; fi
    kill -0 "$server_pid" 2>/dev/null || { cat "$log" >&2; fail "the server exited"; }
    sleep 0.2
done
[ -n "$ready" ] || { cat "$log" >&2; fail "no answer from /readyz in 20 s"; }
ok "GET /readyz: $(printf '%s' "$ready" | tr -d '\n')"
[ -f "$DATA/alarm-center.lock" ] || fail "no lock file $DATA/alarm-center.lock"
ok "lock file $DATA/alarm-center.lock: $(tr -d '\n' <"$DATA/alarm-center.lock")"
alarm-center simulate --target "127.0.0.1:$DEVICE_PORT" --devices 2 --alarm-rate 5 --duration 3s --quiet \
    | tail -n 1 | sed 's/^/     simulate: /'
sleep 1
events=$(cd / && as_service_user alarm-center events --config "$CONFIG" --json --limit 1000 | wc -l)
[ "$events" -gt 0 ] || fail "no event in the store after the simulation"
ok "alarm-center events (as alarm-center, beside the running server): $events events in the store"
others=$(find "$DATA" ! -user alarm-center)
[ -z "$others" ] || fail "files in $DATA not owned by alarm-center: $others"
ok "everything in $DATA belongs to alarm-center: $(cd "$DATA" && echo *)"
kill -TERM "$server_pid"
status=0
wait "$server_pid" || status=$?
server_pid=
[ "$status" = 0 ] || { cat "$log" >&2; fail "the server exited with $status after SIGTERM"; }
ok "SIGTERM: the server stopped cleanly (exit 0)"
grep -q "^  web UI:   http://127.0.0.1:$API_PORT/" "$log" || { cat "$log" >&2; fail "no start-up block naming the web UI"; }
ok "the start-up block names the store and the web UI"
sed 's/^/     log: /' "$log" | head -n 20
rm -f "$log"

say "remove: dpkg -r alarm-center"
dpkg -r alarm-center
[ ! -e /usr/bin/alarm-center ] || fail "/usr/bin/alarm-center is still there"
[ ! -e "$unit" ] || fail "$unit is still there"
ok "binary and unit removed"
getent passwd alarm-center >/dev/null || fail "remove deleted the user"
ok "the user alarm-center is kept"
[ -f "$CONFIG" ] || fail "remove deleted $CONFIG"
ok "$CONFIG is kept (a conffile)"
[ -f "$DATA/alarm-center.db" ] || fail "remove deleted the store $DATA/alarm-center.db"
ok "the data is kept: $(cd "$DATA" && echo *)"

say "install again over the kept user and data, then upgrade in place (dpkg -i twice)"
dpkg -i "$deb" >/dev/null
dpkg -i "$deb" >/dev/null
[ "$(id -u alarm-center)" = "$uid" ] || fail "the user alarm-center changed its uid"
[ -f "$DATA/alarm-center.db" ] || fail "reinstalling lost $DATA/alarm-center.db"
[ "$(stat -c '%a %U:%G' "$DATA")" = "750 alarm-center:alarm-center" ] || fail "$DATA changed hands"
events_again=$(cd / && as_service_user alarm-center events --config "$CONFIG" --json --limit 1000 | wc -l)
[ "$events_again" = "$events" ] || fail "$events_again events after reinstalling, $events before"
ok "reinstall and upgrade: same user (uid $uid), the store and its $events events still there"

say "purge: dpkg -P alarm-center"
dpkg -P alarm-center
[ ! -e "$DATA" ] || fail "purge kept $DATA"
ok "$DATA deleted"
[ ! -e "$CONFIG" ] || fail "purge kept $CONFIG"
ok "$CONFIG deleted"
! getent passwd alarm-center >/dev/null || fail "purge kept the user"
! getent group alarm-center >/dev/null || fail "purge kept the group"
ok "the user and group alarm-center deleted"
dpkg-query -W -f='${Status}' alarm-center 2>/dev/null | grep -qv 'not-installed' && fail "dpkg still knows alarm-center"
ok "dpkg has forgotten the package"

printf '\nall %d checks passed (%s)\n' "$checks" "$deb"

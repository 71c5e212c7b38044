#!/bin/sh
# Writes packaging/debian/config.toml, the /etc/alarm-center/config.toml of the Debian package, from
# docs/config.example.toml: store.data-dir is /var/lib/alarm-center (the unit's StateDirectory) and the
# example [auto-clear] entry and [[devices]] are commented out, everything else is the example as is.
# `make-config.sh --check` fails when the committed file is not what the example gives (run by
# scripts/test-deb.sh).
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
example="$root/docs/config.example.toml"
target="$root/packaging/debian/config.toml"

generate() {
    cat <<'HEADER'
# /etc/alarm-center/config.toml — installed by the alarm-center Debian package (docs/install.md).
#
# This is docs/config.example.toml with store.data-dir set to /var/lib/alarm-center, the service's
# StateDirectory (the only directory the service may write), and with the example [auto-clear] entry and
# the example [[devices]] commented out. dpkg keeps your changes on upgrades (a conffile). After an edit:
#
#     alarm-center config check --config /etc/alarm-center/config.toml && systemctl restart alarm-center
#
# Secrets (ALARM_CENTER_API__TOKEN, ALARM_CENTER_SINKS__MQTT__PASSWORD, …) are better kept in
# /etc/alarm-center/environment (KEY=value lines, mode 0640, owner root:alarm-center), which the unit reads.
#
HEADER
    awk '
        /^\[/ { section = $0 }
        $0 == "data-dir = \"./data\"" { print "data-dir = \"/var/lib/alarm-center\""; next }
        $0 == "# env: ALARM_CENTER_STORE__DATA_DIR=./data" {
            print "# env: ALARM_CENTER_STORE__DATA_DIR=/var/lib/alarm-center"; next
        }
        (section == "[auto-clear]" && $0 != "[auto-clear]" || section == "[[devices]]" || section ~ /^\[devices\./) \
            && $0 != "" && $0 !~ /^#/ { print "# " $0; next }
        { print }
    ' "$example"
}

if [ "${1:-}" = "--check" ]; then
    if generate | cmp -s - "$target"; then
        echo "packaging/debian/config.toml is up to date with docs/config.example.toml"
    else
        echo "packaging/debian/config.toml is out of date: run packaging/debian/make-config.sh" >&2
        generate | diff -u "$target" - >&2 || true
        exit 1
    fi
else
    generate >"$target"
    echo "wrote $target"
fi

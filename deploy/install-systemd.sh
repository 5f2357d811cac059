#!/usr/bin/env bash
# Installs kinetic as a systemd service: the README's steps, as one script.
#
#   cargo build --release --locked
#   sudo deploy/install-systemd.sh                 # the single service, kinetic.service
#   sudo deploy/install-systemd.sh --instance alice --port 9185   # kinetic@alice.service
#
# What it does (nothing is overwritten that already exists, except the binary and units):
#   - a system user and group `kinetic` (no login shell, home /var/lib/kinetic);
#   - /usr/local/bin/kinetic from target/release/kinetic (or --binary FILE);
#   - /etc/kinetic owned root:kinetic, mode 0750, so the service (group kinetic) can enter it;
#   - /etc/kinetic/kinetic.toml (or INSTANCE.toml) from config/default.toml, root:kinetic 0640:
#     readable by the service, writable only by root;
#   - /etc/kinetic/kinetic.env (or INSTANCE.env) from deploy/kinetic.env.example, root 0600:
#     systemd reads it as root before dropping privileges; the daemon never reads the file;
#   - the unit files kinetic.service and kinetic@.service in /etc/systemd/system.
# Then: put the API keys in the env file, `systemctl daemon-reload`, `systemctl enable --now`.
#
# --root DIR installs into DIR instead of / (a test does this in a scratch root; the user is
# then created in DIR/etc/passwd with useradd --prefix).
set -euo pipefail

root=""
binary=""
instance=""
port=""
while [ $# -gt 0 ]; do
    case "$1" in
        --root) root="${2:?--root needs a directory}"; shift 2 ;;
        --binary) binary="${2:?--binary needs a file}"; shift 2 ;;
        --instance) instance="${2:?--instance needs a name}"; shift 2 ;;
        --port) port="${2:?--port needs a number}"; shift 2 ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
repo="$(cd "$(dirname "$0")/.." && pwd)"
binary="${binary:-$repo/target/release/kinetic}"
if [ ! -x "$binary" ]; then
    echo "no binary at $binary: run 'cargo build --release --locked' first (or pass --binary FILE)" >&2
    exit 2
fi
if [ -n "$instance" ] && ! [[ "$instance" =~ ^[A-Za-z0-9_-]+$ ]]; then
    echo "instance names are letters, digits, '-' and '_': $instance" >&2
    exit 2
fi
if [ -n "$instance" ] && ! [[ "$port" =~ ^[0-9]+$ ]]; then
    echo "--instance needs --port N: each instance serves /health on its own port" >&2
    exit 2
fi

# The service user and group.
if ! grep -q '^kinetic:' "$root/etc/passwd" 2>/dev/null; then
    useradd ${root:+--prefix "$root"} --system --user-group --home-dir /var/lib/kinetic \
        --no-create-home --shell /usr/sbin/nologin kinetic
fi
gid="$(awk -F: '$1 == "kinetic" { print $3 }' "$root/etc/group")"
if [ -z "$gid" ]; then
    echo "group kinetic missing from $root/etc/group" >&2
    exit 1
fi

install -d -m 0755 "$root/usr/local/bin" "$root/etc/systemd/system"
install -m 0755 "$binary" "$root/usr/local/bin/kinetic"
# The config directory: root owns it, the service's group may enter and read it.
install -d -m 0750 -o 0 -g "$gid" "$root/etc/kinetic"
name="${instance:-kinetic}"
if [ ! -e "$root/etc/kinetic/$name.toml" ]; then
    install -m 0640 -o 0 -g "$gid" "$repo/config/default.toml" "$root/etc/kinetic/$name.toml"
fi
if [ ! -e "$root/etc/kinetic/$name.env" ]; then
    install -m 0600 -o 0 -g 0 "$repo/deploy/kinetic.env.example" "$root/etc/kinetic/$name.env"
    if [ -n "$instance" ]; then
        # Each instance needs its own HTTP port; pick one and write it down.
        printf '\n# This instance'"'"'s HTTP port (each instance needs its own).\nKINETIC__API__LISTEN=127.0.0.1:%s\n' \
            "$port" >>"$root/etc/kinetic/$name.env"
    fi
fi
install -m 0644 "$repo/deploy/kinetic.service" "$root/etc/systemd/system/kinetic.service"
install -m 0644 "$repo/deploy/kinetic@.service" "$root/etc/systemd/system/kinetic@.service"

unit="kinetic.service"
[ -n "$instance" ] && unit="kinetic@$instance.service"
cat <<EOF
installed into ${root:-/}:
  binary  /usr/local/bin/kinetic
  config  /etc/kinetic/$name.toml (root:kinetic 0640)
  secrets /etc/kinetic/$name.env (root 0600): add BINANCE_API_KEY and BINANCE_API_SECRET
  unit    /etc/systemd/system/$unit
next:
  sudoedit /etc/kinetic/$name.env
  sudo -u kinetic /usr/local/bin/kinetic check-config --config /etc/kinetic/$name.toml
  sudo systemctl daemon-reload && sudo systemctl enable --now $unit
  journalctl -u $unit -f
EOF

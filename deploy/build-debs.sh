#!/usr/bin/env bash
# Builds the Debian packages np-server (np-server, np-vendor, unit, config) and np-agent
# (np-agent, unit, example config) with cargo-deb, installing cargo-deb first if it is
# missing, then lists each package's control fields and files. The .debs land in
# target/debian/. Usage: deploy/build-debs.sh [server|agent]...  (default: both)
set -euo pipefail
cd "$(dirname "$0")/.."
packages=("$@")
[ ${#packages[@]} -eq 0 ] && packages=(server agent)
if ! cargo deb --version >/dev/null 2>&1; then
    echo "build-debs: installing cargo-deb" >&2
    cargo install cargo-deb --locked
fi
command -v dpkg-deb >/dev/null || { echo "build-debs: dpkg-deb is missing (apt-get install dpkg)" >&2; exit 1; }
status=0
for p in "${packages[@]}"; do
    case "$p" in
        server) unit=deploy/np-server.service ;;
        agent) unit=deploy/np-agent.service ;;
        *) echo "build-debs: unknown package $p (server or agent)" >&2; exit 2 ;;
    esac
    if [ ! -f "$unit" ]; then
        echo "build-debs: $unit is missing; np-$p cannot be packaged without its systemd unit" >&2
        status=1
        continue
    fi
    deb="$(cargo deb -p "np-$p" --locked | tail -n1)"
    [ -f "$deb" ] || { echo "build-debs: cargo deb -p np-$p did not make a package" >&2; status=1; continue; }
    echo "== $deb"
    dpkg-deb -I "$deb"
    dpkg-deb -c "$deb"
done
exit $status

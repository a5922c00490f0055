#!/usr/bin/env bash
# Builds the Debian packages np-server (np-server, np-vendor, unit, config, man pages, docs)
# and np-agent (np-agent, unit, example config, man pages, docs) with cargo-deb, installing
# cargo-deb first if it is missing, then lists each package's control fields and files.
# The binaries are built once in release mode, their man pages generated from their command
# lines (`generate-man`) into target/man/, and the packaged binaries stripped of debug
# information. The .debs land in target/debian/; deploy/test-debs.sh installs and checks
# them in a throwaway Debian root. Usage: deploy/build-debs.sh [server|agent]...  (default: both)
set -euo pipefail
cd "$(dirname "$0")/.."
packages=("$@")
[ ${#packages[@]} -eq 0 ] && packages=(server agent)
for p in "${packages[@]}"; do
    case "$p" in
        server|agent) [ -f "deploy/np-$p.service" ] || {
            echo "build-debs: deploy/np-$p.service is missing; np-$p cannot be packaged without its systemd unit" >&2
            exit 1
        } ;;
        *) echo "build-debs: unknown package $p (server or agent)" >&2; exit 2 ;;
    esac
done
if ! cargo deb --version >/dev/null 2>&1; then
    echo "build-debs: installing cargo-deb" >&2
    cargo install cargo-deb --locked
fi
command -v dpkg-deb >/dev/null || { echo "build-debs: dpkg-deb is missing (apt-get install dpkg)" >&2; exit 1; }
command -v strip >/dev/null || { echo "build-debs: strip is missing (apt-get install binutils)" >&2; exit 1; }

cargo build --release --locked -p np-server -p np-agent --bins
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
# cargo-deb takes the pages from ../target/man (see the assets in server/ and agent/Cargo.toml).
man=target/man
rm -rf "$man"
for b in np-server np-vendor np-agent; do
    "$target_dir/release/$b" generate-man --out "$man"
done
gzip -9n "$man"/*.[18]

status=0
for p in "${packages[@]}"; do
    deb="$(cargo deb -p "np-$p" --locked --no-build --strip | tail -n1)"
    [ -f "$deb" ] || { echo "build-debs: cargo deb -p np-$p did not make a package" >&2; status=1; continue; }
    echo "== $deb"
    dpkg-deb -I "$deb"
    dpkg-deb -c "$deb"
done
exit $status

#!/usr/bin/env bash
# Installs the np-agent and np-server .debs into a throwaway Debian root and checks what the
# packages promise: they depend on what their scripts run and install with their
# dependencies from Debian's mirror, create their users, groups
# and folders with the right owners and modes, ship stripped binaries and man pages, their
# systemd units pass `systemd-analyze verify`, the binaries run, and removing and purging
# them keeps the data folders.
#
# Usage (as root): deploy/test-debs.sh [--debs DIR] [--root DIR] [--keep] [--mirror URL]
#   --debs DIR    take np-agent_*.deb and np-server_*.deb from DIR (default: build them with
#                 deploy/build-debs.sh into target/debian/)
#   --root DIR    where to build the Debian root (default: a new folder under /var/tmp);
#                 removed at the end unless --keep
#   --base DIR    a `debootstrap --variant=minbase bookworm` root to copy instead of running
#                 debootstrap (saves the download); made there first when DIR does not exist
#   --mirror URL  the Debian mirror (default: http://deb.debian.org/debian)
#
# Needs: root, debootstrap, and the Debian mirror over the network (debootstrap and
# apt-get in the root download from it). It takes minutes, so it is not part of CI; run
# it by hand after a change to deploy/ or the packaging metadata. Prints "test-debs: PASS"
# and exits 0 when every check holds; otherwise names the failed check and exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."

debs="" root="" keep=0 base="" mirror="http://deb.debian.org/debian"
while [ $# -gt 0 ]; do
    case "$1" in
        --debs) debs="${2:?--debs needs a folder}"; shift 2 ;;
        --root) root="${2:?--root needs a folder}"; shift 2 ;;
        --base) base="${2:?--base needs a folder}"; shift 2 ;;
        --mirror) mirror="${2:?--mirror needs a URL}"; shift 2 ;;
        --keep) keep=1; shift ;;
        -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "test-debs: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

say() { echo "test-debs: $*"; }
fail() { echo "test-debs: FAIL: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "run as root (debootstrap and chroot need it)"
command -v debootstrap >/dev/null || fail "debootstrap is missing: apt-get install -y debootstrap"

# 1. The packages.
if [ -z "$debs" ]; then
    deploy/build-debs.sh >/dev/null
    debs=target/debian
fi
agent_deb=$(ls -t "$debs"/np-agent_*.deb 2>/dev/null | head -n1)
server_deb=$(ls -t "$debs"/np-server_*.deb 2>/dev/null | head -n1)
[ -f "$agent_deb" ] || fail "no np-agent_*.deb in $debs"
[ -f "$server_deb" ] || fail "no np-server_*.deb in $debs"
say "packages: $agent_deb $server_deb"

# 2. The Debian root.
[ -n "$root" ] || root=$(mktemp -d /var/tmp/np-debroot.XXXXXX)
mounted=()
cleanup() {
    for m in "${mounted[@]}"; do umount -l "$m" 2>/dev/null || true; done
    if [ "$keep" = 0 ]; then rm -rf --one-file-system "$root"; else say "root kept at $root"; fi
}
trap cleanup EXIT
if [ -n "$base" ]; then
    if [ ! -x "$base/usr/bin/apt-get" ]; then
        say "debootstrap (minbase, bookworm) into $base"
        debootstrap --variant=minbase bookworm "$base" "$mirror" >"$root.debootstrap.log" 2>&1 \
            || fail "debootstrap failed; see $root.debootstrap.log"
    fi
    say "copying $base to $root"
    cp -a "$base/." "$root/"
else
    say "debootstrap (minbase, bookworm) into $root"
    debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.debootstrap.log" 2>&1 \
        || fail "debootstrap failed; see $root.debootstrap.log"
fi
mount -t proc proc "$root/proc" && mounted+=("$root/proc")
in_root() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
    DEBIAN_FRONTEND=noninteractive "$@"; }
# No daemon may start inside the root.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 0755 "$root/usr/sbin/policy-rc.d"

# Both postinsts run addgroup/adduser. Debian's apt depends on adduser, so a root always has
# it and installing cannot show a missing dependency: the packages' Depends are checked.
for p in agent server; do
    deb=$([ $p = agent ] && echo "$agent_deb" || echo "$server_deb")
    dpkg-deb -f "$deb" Depends | grep -qw adduser || fail "np-$p does not depend on adduser (its postinst runs addgroup)"
done
say "ok both packages depend on adduser"
in_root apt-get update -qq || fail "apt-get update in the root failed (is the mirror $mirror reachable?)"
cp "$agent_deb" "$root/tmp/np-agent.deb"
cp "$server_deb" "$root/tmp/np-server.deb"

# 3. np-agent alone, then np-server.
say "installing np-agent"
in_root apt-get install -y -qq --no-install-recommends /tmp/np-agent.deb >"$root/tmp/agent-install.log" 2>&1 \
    || { cat "$root/tmp/agent-install.log" >&2; fail "np-agent did not install"; }
say "installing np-server"
in_root apt-get install -y -qq --no-install-recommends /tmp/np-server.deb >"$root/tmp/server-install.log" 2>&1 \
    || { cat "$root/tmp/server-install.log" >&2; fail "np-server did not install"; }
grep -q 'device key made; its public key' "$root/tmp/agent-install.log" \
    || fail "np-agent's postinst did not report the device key it made"

# 4. Users, groups, folders, modes.
expect_stat() { # PATH MODE OWNER:GROUP
    local got
    got=$(in_root stat -c '%a %U:%G' "$1" 2>/dev/null) || fail "$1 does not exist"
    [ "$got" = "$2 $3" ] || fail "$1 is $got, expected $2 $3"
    say "ok $1 $2 $3"
}
in_root getent passwd np-server >/dev/null || fail "user np-server was not created"
in_root getent group np-server >/dev/null || fail "group np-server was not created"
in_root getent group np-agent >/dev/null || fail "group np-agent was not created"
shell=$(in_root getent passwd np-server | cut -d: -f7)
[ "$shell" = /usr/sbin/nologin ] || fail "np-server's shell is $shell, expected /usr/sbin/nologin"
say "ok users and groups: np-server (nologin), np-agent"
expect_stat /var/lib/np-server 700 np-server:np-server
expect_stat /etc/np-server 750 root:np-server
expect_stat /etc/np-server/server.toml 640 root:np-server
expect_stat /var/lib/np-agent 710 root:np-agent
expect_stat /var/lib/np-agent/inbox 2770 root:np-agent
expect_stat /etc/np-agent 755 root:root
expect_stat /etc/np-agent/device.key 600 root:root

# 5. Binaries: stripped, and they run on this Debian.
for b in np-server np-vendor np-agent; do
    in_root "$b" --version >/dev/null || fail "$b --version failed in the root"
    size=$(stat -c %s "$root/usr/bin/$b")
    [ "$size" -lt $((30 * 1024 * 1024)) ] || fail "/usr/bin/$b is $size bytes: not stripped?"
    if command -v readelf >/dev/null; then
        # .debug_gdb_scripts is a loaded section Rust always has, not debug information.
        if readelf -S -W "$root/usr/bin/$b" | grep -qE '\.debug_(info|line|str|abbrev|ranges|loc)'; then
            fail "/usr/bin/$b carries debug information"
        fi
    fi
    say "ok /usr/bin/$b runs, $((size / 1024)) KiB, no debug information"
done

# 6. Man pages (systemd units name them in Documentation=).
in_root apt-get install -y -qq --no-install-recommends systemd man-db >"$root/tmp/systemd-install.log" 2>&1 \
    || { tail -n 20 "$root/tmp/systemd-install.log" >&2; fail "systemd and man-db did not install in the root"; }
for page in np-server.8 np-vendor.1 np-agent.8; do
    in_root man -w "${page%.*}" >/dev/null 2>&1 || fail "man page ${page} is not installed"
    in_root sh -c "man ${page##*.} ${page%.*} | grep -q OPTIONS" 2>/dev/null \
        || in_root sh -c "MANWIDTH=80 man ${page##*.} ${page%.*} 2>/dev/null | head -n 5 | grep -qi ${page%.*}" \
        || fail "man ${page##*.} ${page%.*} does not render"
    say "ok man ${page##*.} ${page%.*}"
done
for doc in /usr/share/doc/np-server/api.md /usr/share/doc/np-server/formats.md \
    /usr/share/doc/np-server/cli.md /usr/share/doc/np-agent/formats.md /usr/share/doc/np-agent/cli.md; do
    [ -s "$root$doc" ] || fail "$doc is not shipped"
done
say "ok documents in /usr/share/doc"

# 7. The units.
out=$(in_root systemd-analyze verify /lib/systemd/system/np-server.service \
    /lib/systemd/system/np-agent.service 2>&1) || { echo "$out" >&2; fail "systemd-analyze verify refused the units"; }
# verify exits 0 on some warnings: any line about our units is a failure too.
if echo "$out" | grep -E 'np-(server|agent)\.service' >&2; then fail "systemd-analyze verify warned about the units"; fi
say "ok systemd-analyze verify np-server.service np-agent.service"

# 8. The server's packaged config starts a working server (as its user, on a free port).
in_root runuser -u np-server -- np-server init --data /var/lib/np-server >"$root/tmp/init.log" 2>&1 \
    || { cat "$root/tmp/init.log" >&2; fail "np-server init as np-server in /var/lib/np-server failed"; }
expect_stat /var/lib/np-server/offline/root.key 600 np-server:np-server
say "ok np-server init as user np-server"

# 9. Remove and purge keep the data.
in_root apt-get purge -y -qq np-server np-agent >"$root/tmp/purge.log" 2>&1 \
    || { cat "$root/tmp/purge.log" >&2; fail "purging the packages failed"; }
[ -d "$root/var/lib/np-server/offline" ] || fail "purge removed /var/lib/np-server"
[ -f "$root/etc/np-agent/device.key" ] || fail "purge removed the device key"
[ ! -e "$root/usr/bin/np-agent" ] || fail "purge left /usr/bin/np-agent"
say "ok purge removes the binaries and keeps /var/lib/np-server and the device key"

say "PASS"

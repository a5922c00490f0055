#!/usr/bin/env bash
# Puts a Linux kernel for the VM test at DIR/vmlinuz (default: target/vm/kernel): Debian's
# cloud kernel (NVMe, ext4, GPT and the serial console built in, so no initramfs), fetched
# with `apt-get download` and unpacked with `dpkg-deb -x`. Does nothing when it is there.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
dir=${1:-$repo/target/vm/kernel}
[ -s "$dir/vmlinuz" ] && exit 0
mkdir -p "$dir/tmp"
cd "$dir/tmp"
meta=linux-image-cloud-amd64
find_pkg() { apt-cache depends "$meta" 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9].*-cloud-amd64\)$/\1/p' | head -n1; }
pkg=$(find_pkg)
if [ -z "$pkg" ]; then
    apt-get update -qq >/dev/null 2>&1 || true
    pkg=$(find_pkg)
fi
[ -n "$pkg" ] || { echo "cannot find the package behind $meta (apt-get update?)" >&2; exit 1; }
apt-get download "$pkg" >/dev/null 2>&1 || { echo "apt-get download $pkg failed" >&2; exit 1; }
dpkg-deb -x ./*.deb x
cp x/boot/vmlinuz-* "$dir/vmlinuz.tmp"
mv "$dir/vmlinuz.tmp" "$dir/vmlinuz"
echo "$pkg" > "$dir/package"
cd "$dir" && rm -rf "$dir/tmp"
echo "kernel: $pkg -> $dir/vmlinuz"

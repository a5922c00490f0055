#!/usr/bin/env bash
# (d) Peer: RAUC 1.8 (Debian `rauc`, `squashfs-tools`). `rauc extract --keyring` of a plain
# RAUC bundle (CMS-signed squashfs; verify + unpack) with a payload of the same size, vs our
# offline apply of a plain bundle (verify + stream into the slot with fsync + trial + commit).
# The RAUC bundle is signed with a throwaway self-signed openssl certificate made in the temp
# folder. Usage: bench/rauc.sh [--quick] [--runs N]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
parse_part_args "$@"
need_pkgs rauc squashfs-tools
need_bins np-agent np-vendor
bench_init
T="$BENCH_TMP"
offline_setup
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/rauc-key.pem" -out "$T/rauc-cert.pem" \
    -subj "/CN=np-bench throwaway" -days 1 2>/dev/null || die "cannot make the RAUC test certificate"

echo "## (d) RAUC 1.8 rauc extract --keyring (plain bundle) vs np-agent apply (plain bundle) (load $(load1), best of $RUNS)"
for size in $(bench_sizes); do
    img="$T/n-reporter-2.0.0.img"
    make_image "$img" "$size"
    mkdir -p "$T/content"
    ln "$img" "$T/content/rootfs.img"
    printf '[update]\ncompatible=np-bench\nversion=2.0.0\n\n[bundle]\nformat=plain\n\n[image.rootfs]\nfilename=rootfs.img\n' \
        > "$T/content/manifest.raucm"
    rm -f "$T/update.raucb"
    rauc bundle --cert="$T/rauc-cert.pem" --key="$T/rauc-key.pem" "$T/content" "$T/update.raucb" \
        >"$T/rauc-bundle.log" 2>&1 || { cat "$T/rauc-bundle.log" >&2; die "rauc bundle failed"; }
    rm -rf "$T/content"
    sign_release "$T/trust" 2.0.0 "$img" 2026-06-01T00:00:00Z
    "$NP_BIN/np-vendor" bundle build --manifest "$T/trust/release-2.0.0.env" --image "$img" \
        --out "$T/b.tar" >/dev/null || die "bundle build failed"
    rm -f "$img"
    rauc_s=""; rauc_sync_s=""
    for ((r = 0; r < RUNS; r++)); do
        rm -rf "$T/extract"; sync
        start=$(date +%s.%N)
        timed "$T/t.rauc" rauc extract --keyring="$T/rauc-cert.pem" "$T/update.raucb" "$T/extract"
        sync "$T/extract/rootfs.img"
        end=$(date +%s.%N)
        [ "$(stat -c %s "$T/extract/rootfs.img")" = "$size" ] || die "rauc extract wrote a payload of the wrong size"
        s="$(secs_of "$T/t.rauc")"; ss=$(awk -v a="$start" -v b="$end" 'BEGIN{printf "%.2f", b-a}')
        if [ -z "$rauc_s" ] || awk -v a="$ss" -v b="$rauc_sync_s" 'BEGIN{exit !(a<b)}'; then
            rauc_s="$s"; rauc_sync_s="$ss"; rauc_rss="$(rss_mib_of "$T/t.rauc")"
        fi
    done
    rm -rf "$T/extract"
    offline_apply_best "$RUNS" "$T/b.tar"
    echo "  $(human "$size"): rauc extract ${rauc_s}s (+ sync of the payload: ${rauc_sync_s}s), peak RSS ${rauc_rss} MiB; np-agent apply ${APPLY_S}s, peak RSS ${APPLY_RSS} MiB; np-agent/rauc ratio $(ratio "$APPLY_S" "$rauc_sync_s") (vs extract without sync: $(ratio "$APPLY_S" "$rauc_s"))"
    rm -f "$T/update.raucb" "$T/b.tar"
done

#!/usr/bin/env bash
# (a) Offline apply: `np-agent apply BUNDLE` (plain and gzip) into a provisioned agent state
# vs `dd conv=fsync` + `openssl dgst -sha256` of the same image. Goal: ratio <= 0.85, agent
# peak RSS <= 32 MiB. Usage: bench/offline.sh [--quick] [--runs N]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
parse_part_args "$@"
need_bins np-agent np-vendor
bench_init
T="$BENCH_TMP"
offline_setup

echo "## (a) offline apply vs dd conv=fsync + openssl dgst -sha256 (load $(load1), best of $RUNS)"
for size in $(bench_sizes); do
    img="$T/n-reporter-2.0.0.img"
    make_image "$img" "$size"
    sign_release "$T/trust" 2.0.0 "$img" 2026-06-01T00:00:00Z
    "$NP_BIN/np-vendor" bundle build --manifest "$T/trust/release-2.0.0.env" --image "$img" \
        --out "$T/b.tar" >/dev/null || die "bundle build failed"
    "$NP_BIN/np-vendor" bundle build --manifest "$T/trust/release-2.0.0.env" --image "$img" \
        --gzip --out "$T/b.tar.gz" >/dev/null || die "bundle build --gzip failed"
    base=""
    for ((r = 0; r < RUNS; r++)); do
        rm -f "$T/dd.out"; sync
        timed "$T/t.dd" dd if="$img" of="$T/dd.out" bs=1M conv=fsync status=none
        timed "$T/t.sha" openssl dgst -sha256 "$img"
        s=$(awk -v a="$(secs_of "$T/t.dd")" -v b="$(secs_of "$T/t.sha")" 'BEGIN{print a+b}')
        if [ -z "$base" ] || awk -v a="$s" -v b="$base" 'BEGIN{exit !(a<b)}'; then
            base="$s"; dd_s="$(secs_of "$T/t.dd")"; sha_s="$(secs_of "$T/t.sha")"
        fi
    done
    rm -f "$T/dd.out"
    echo "  $(human "$size"): baseline dd conv=fsync ${dd_s}s + openssl dgst ${sha_s}s = ${base}s"
    for kind in plain gzip; do
        bundle="$T/b.tar"; [ "$kind" = gzip ] && bundle="$T/b.tar.gz"
        offline_apply_best "$RUNS" "$bundle"
        best="$APPLY_S"; rss="$APPLY_RSS"
        r="$(ratio "$best" "$base")"
        echo "  $(human "$size") $kind bundle: np-agent apply ${best}s, peak RSS ${rss} MiB; ratio to baseline $r (goal <= 0.85: $(verdict "$r" 0.85 '<=')); RSS goal <= 32 MiB: $(verdict "$rss" 32 '<=')"
    done
    rm -f "$img" "$T/b.tar" "$T/b.tar.gz"
done

#!/usr/bin/env bash
# (e) Offline apply into a real block device: `np-agent apply BUNDLE` with slot b on a loop
# device, against `dd conv=fsync` into the same device + `openssl dgst -sha256` of the image,
# and against `dd conv=fsync` alone (the device's limit), in the same run; agent peak RSS.
# Needs root (losetup). Usage: bench/disks.sh [--quick] [--runs N]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
parse_part_args "$@"
need_bins np-agent np-vendor
[ "$(id -u)" = 0 ] || die "disks: attaching loop devices needs root"
bench_init
T="$BENCH_TMP"
offline_setup
LOOPS=()
detach_loops() { local d; for d in "${LOOPS[@]}"; do losetup -d "$d" 2>/dev/null; done; bench_cleanup; }
trap detach_loops EXIT

echo "## (e) offline apply into a loop device vs dd conv=fsync (+ openssl dgst -sha256) into it (load $(load1), best of $RUNS)"
for size in $(bench_sizes); do
    img="$T/n-reporter-2.0.0.img"
    make_image "$img" "$size"
    sign_release "$T/trust" 2.0.0 "$img" 2026-06-01T00:00:00Z
    "$NP_BIN/np-vendor" bundle build --manifest "$T/trust/release-2.0.0.env" --image "$img" \
        --out "$T/b.tar" >/dev/null || die "bundle build failed"
    truncate -s $((size + 16 * 1048576)) "$T/part-b"
    dev=$(losetup -f --show "$T/part-b") || die "losetup -f --show failed: no loop devices here"
    LOOPS+=("$dev")
    truncate -s 4M "$T/part-a"
    dd_best="" both_best="" agent_best="" rss=""
    for ((r = 0; r < RUNS; r++)); do
        sync
        timed "$T/t.dd" dd if="$img" of="$dev" bs=1M conv=fsync status=none
        timed "$T/t.sha" openssl dgst -sha256 "$img"
        d="$(secs_of "$T/t.dd")"
        s=$(awk -v a="$d" -v b="$(secs_of "$T/t.sha")" 'BEGIN{print a+b}')
        if [ -z "$dd_best" ] || awk -v a="$d" -v b="$dd_best" 'BEGIN{exit !(a<b)}'; then dd_best="$d"; fi
        if [ -z "$both_best" ] || awk -v a="$s" -v b="$both_best" 'BEGIN{exit !(a<b)}'; then both_best="$s"; fi
        # A fresh box with slot a a file and slot b the loop device.
        rm -rf "$T/state"; mkdir -p "$T/state"
        agent_config "$T/state.toml" "$T/state" "$T/trust/device.key" "$KEYS/TEST-ONLY-root.pub"
        printf '[slots]\na = "%s"\nb = "%s"\n' "$T/part-a" "$dev" >> "$T/state.toml"
        "$NP_BIN/np-agent" --config "$T/state.toml" provision --manifest "$T/trust/release-1.0.0.env" \
            --image "$T/trust/n-reporter-1.0.0.img" --keyring "$T/trust/keyring.env" \
            --entitlement "$T/trust/entitlement.env" >/dev/null || die "np-agent provision failed"
        sync
        timed "$T/t.agent" "$NP_BIN/np-agent" --config "$T/state.toml" apply "$T/b.tar"
        a="$(secs_of "$T/t.agent")"
        if [ -z "$agent_best" ] || awk -v x="$a" -v y="$agent_best" 'BEGIN{exit !(x<y)}'; then
            agent_best="$a"; rss="$(rss_mib_of "$T/t.agent")"
        fi
    done
    v="$("$NP_BIN/np-agent" --config "$T/state.toml" status --json | json_get version)"
    [ "$v" = 2.0.0 ] || die "after apply the agent runs ${v:-?}, not 2.0.0"
    cmp -n "$size" "$img" "$dev" || die "the loop device does not hold the image"
    echo "  $(human "$size") into $dev: dd conv=fsync ${dd_best}s ($(mbps "$size" "$dd_best") MiB/s); dd + openssl dgst ${both_best}s;" \
        "np-agent apply ${agent_best}s ($(mbps "$size" "$agent_best") MiB/s), peak RSS ${rss} MiB;" \
        "ratio to dd+openssl $(ratio "$agent_best" "$both_best"), to dd alone $(ratio "$agent_best" "$dd_best")"
    losetup -d "$dev"; LOOPS=()
    rm -f "$img" "$T/b.tar" "$T/part-b" "$T/part-a"
done

#!/usr/bin/env bash
# (b) Online update: np-server on 127.0.0.1 + `np-agent check` (check in, download straight
# into the inactive slot while hashing, install, trial, commit) vs `curl -o` + `sync FILE` +
# `openssl dgst -sha256` of the same blob from the same server. Goal: ratio <= 1.0, agent
# peak RSS <= 32 MiB. Usage: bench/online.sh [--quick] [--runs N]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
parse_part_args "$@"
need_bins np-server np-agent np-bench
bench_init
T="$BENCH_TMP"
start_server "$T/server" "$T/server.log"
install -m 0600 "$KEYS/TEST-ONLY-device.key" "$T/device.key"
api POST /api/v1/devices "{\"serial\": \"$BOX_SERIAL\", \"purchase_date\": \"$(date -u +%Y-%m-%d)\",
  \"customer\": \"np-bench\", \"device_key\": \"$(cat "$KEYS/TEST-ONLY-device.pub")\"}" >/dev/null
curl -fsS "$SERVER_URL/api/v1/keyring" > "$T/keyring.env"
api GET "/api/v1/devices/$BOX_SERIAL/entitlement" > "$T/entitlement.env"

# publish VERSION IMAGE RELEASED_AT: upload the blob, create the release at 100 % rollout,
# and write its signed manifest to $T/release-VERSION.env; prints the image's sha256.
publish() {
    local v="$1" img="$2" at="$3" sha
    sha="$(curl -fsS -H "Authorization: Bearer $ADMIN_TOKEN" -T "$img" "$SERVER_URL/api/v1/blobs" | json_get sha256)"
    api POST /api/v1/releases "{\"version\": \"$v\", \"security_version\": 1, \"models\": [\"$BOX_MODEL\"],
      \"channel\": \"stable\", \"released_at\": \"$at\", \"min_from_version\": \"0.1.0\",
      \"image\": {\"name\": \"$(basename "$img")\", \"sha256\": \"$sha\"}, \"notes\": \"np-bench\"}" |
        python3 -c 'import json,sys; json.dump(json.load(sys.stdin)["manifest"], sys.stdout)' > "$T/release-$v.env"
    api PATCH "/api/v1/releases/$v" '{"rollout_percent": 100}' >/dev/null
    echo "$sha"
}

make_image "$T/n-reporter-1.0.0.img" 1048576
publish 1.0.0 "$T/n-reporter-1.0.0.img" 2026-01-01T00:00:00Z >/dev/null

provision() {
    rm -rf "$1"; mkdir -p "$1"
    agent_config "$1.toml" "$1" "$T/device.key" "$T/server/root.pub" "$SERVER_URL"
    "$NP_BIN/np-agent" --config "$1.toml" provision --manifest "$T/release-1.0.0.env" \
        --image "$T/n-reporter-1.0.0.img" --keyring "$T/keyring.env" \
        --entitlement "$T/entitlement.env" >/dev/null || die "np-agent provision failed"
    echo "$1.toml"
}

echo "## (b) online update vs curl -o + sync FILE + openssl dgst -sha256 (load $(load1), best of $RUNS)"
minor=0
for size in $(bench_sizes); do
    minor=$((minor + 1)); v="2.$minor.0"
    img="$T/n-reporter-$v.img"
    make_image "$img" "$size"
    sha="$(publish "$v" "$img" "2026-06-0${minor}T00:00:00Z")"
    rm -f "$img"
    path="/api/v1/device/blobs/$sha"
    device_check_in 1.0.0 "$T/device.key"
    base=""
    for ((r = 0; r < RUNS; r++)); do
        rm -f "$T/curl.out"; sync
        "$NP_BIN/np-bench" sign --serial "$BOX_SERIAL" --key "$T/device.key" --path "$path" > "$T/headers"
        start=$(date +%s.%N)
        curl -fsS -H @"$T/headers" -o "$T/curl.out" "$SERVER_URL$path"
        sync "$T/curl.out"
        got="$(openssl dgst -sha256 -r "$T/curl.out" | cut -c1-64)"
        s=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}')
        [ "$got" = "$sha" ] || die "curl fetched a blob whose sha256 is $got, not $sha"
        if [ -z "$base" ] || awk -v a="$s" -v b="$base" 'BEGIN{exit !(a<b)}'; then base="$s"; fi
    done
    rm -f "$T/curl.out"
    best=""
    for ((r = 0; r < RUNS; r++)); do
        cfg="$(provision "$T/state")"
        sync
        timed "$T/t.agent" "$NP_BIN/np-agent" --config "$cfg" check
        s="$(secs_of "$T/t.agent")"
        if [ -z "$best" ] || awk -v a="$s" -v b="$best" 'BEGIN{exit !(a<b)}'; then
            best="$s"; rss="$(rss_mib_of "$T/t.agent")"
        fi
    done
    got="$("$NP_BIN/np-agent" --config "$cfg" status --json | json_get version)"
    [ "$got" = "$v" ] || die "after check the agent runs ${got:-?}, not $v"
    rm -rf "$T/state"
    r="$(ratio "$best" "$base")"
    echo "  $(human "$size"): np-agent check ${best}s, peak RSS ${rss} MiB; curl+sync+openssl ${base}s; ratio $r (goal <= 1.0: $(verdict "$r" 1.0 '<=')); RSS goal <= 32 MiB: $(verdict "$rss" 32 '<=')"
done
echo "  np-server peak RSS $(awk '/VmHWM/{printf "%.1f MiB", $2/1024}' /proc/$SERVER_PID/status)"

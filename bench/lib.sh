# Shared helpers of the bench scripts (sourced, not run). Everything talks only to
# 127.0.0.1, every wait is bounded, and `bench_cleanup` (an EXIT trap) kills only the
# processes these scripts started, by pid, and removes the temp folder.
# Inputs: NP_BIN (folder with np-server, np-vendor, np-agent, np-bench; default: the
# workspace's target/release), BENCH_TMP (created by bench_init).

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$BENCH_DIR/.." && pwd)"
KEYS="$REPO_DIR/firmware-samples/keys"
NP_BIN="${NP_BIN:-$REPO_DIR/target/release}"
BENCH_PIDS=()

bench_init() {
    BENCH_TMP="$(mktemp -d "${BENCH_TMPDIR:-/var/tmp}/np-bench.XXXXXX")"
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
    # Private copies of the TEST-ONLY keys, mode 0600 (np-vendor warns about readable keys).
    mkdir -p "$BENCH_TMP/keys"
    install -m 0600 "$KEYS"/TEST-ONLY-* "$BENCH_TMP/keys/"
    KEYS="$BENCH_TMP/keys"
}

bench_cleanup() {
    local pid
    for pid in "${BENCH_PIDS[@]}"; do
        kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    done
    [ -n "${BENCH_TMP:-}" ] && rm -rf "$BENCH_TMP"
    return 0
}

die() { echo "bench: $*" >&2; exit 1; }

# The options every part script takes: --quick (small images) and --runs N (default 2).
parse_part_args() {
    RUNS=2
    while [ $# -gt 0 ]; do
        case "$1" in
            --quick) BENCH_QUICK=1 ;;
            --runs) RUNS="$2"; shift ;;
            *) die "unknown option $1 (use --quick, --runs N)" ;;
        esac
        shift
    done
}

# need_pkgs PKG...: apt-get install the Debian packages that are missing.
need_pkgs() {
    local missing=() p
    for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "bench: installing ${missing[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >/dev/null ||
        die "cannot install ${missing[*]}"
}

# need_bins NAME...: the project's binaries must exist in NP_BIN.
need_bins() {
    local b
    for b in "$@"; do
        [ -x "$NP_BIN/$b" ] || die "$NP_BIN/$b is missing: run bench/run.sh (it builds them) or set NP_BIN"
    done
}

# load: the 1-minute load average (other builds on the machine skew a run).
load1() { cut -d' ' -f1 /proc/loadavg; }

# timed OUT CMD...: runs CMD under /usr/bin/time; OUT gets "seconds peak_rss_kib".
timed() {
    local out="$1"; shift
    /usr/bin/time -f '%e %M' -o "$out" "$@" >/dev/null 2>"$out.err" || {
        cat "$out.err" >&2; die "failed: $*"
    }
    tail -n1 "$out" > "$out.tmp" && mv "$out.tmp" "$out"
}
secs_of() { cut -d' ' -f1 "$1"; }
rss_mib_of() { awk '{printf "%.1f", $2/1024}' "$1"; }

# best_of N OUT CMD...: the fastest of N timed runs (sync before each).
best_of() {
    local n="$1" out="$2" i; shift 2
    for ((i = 0; i < n; i++)); do
        sync
        timed "$out.$i" "$@"
        if [ $i -eq 0 ] || awk -v a="$(secs_of "$out.$i")" -v b="$(secs_of "$out")" 'BEGIN{exit !(a<b)}'; then
            cp "$out.$i" "$out"
        fi
    done
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b>0) printf "%.2f", a/b; else print "n/a" }'; }
mbps() { awk -v bytes="$1" -v s="$2" 'BEGIN{ if (s>0) printf "%.0f", bytes/1048576/s; else print "n/a" }'; }
verdict() { awk -v v="$1" -v g="$2" -v op="$3" 'BEGIN{ ok = (op=="<=") ? v<=g : v>=g; print ok ? "met" : "NOT met" }'; }

# make_image FILE BYTES: incompressible test image.
make_image() { head -c "$2" /dev/urandom > "$1"; }

# start_server DATA LOG: np-server on 127.0.0.1:0; sets SERVER_PID, SERVER_URL, ADMIN_TOKEN.
start_server() {
    local data="$1" log="$2" i
    "$NP_BIN/np-server" init --data "$data" > "$data.init" 2>/dev/null || die "np-server init failed"
    ADMIN_TOKEN="$(sed -n 's/^admin token: //p' "$data.init")"
    RUST_LOG="${RUST_LOG:-warn}" "$NP_BIN/np-server" serve --data "$data" --listen 127.0.0.1:0 2>"$log" &
    SERVER_PID=$!
    BENCH_PIDS+=("$SERVER_PID")
    SERVER_URL=""
    for ((i = 0; i < 300; i++)); do
        SERVER_URL="$(sed 2>/dev/null -n 's/.*np-server listening on \(http:\/\/127\.0\.0\.1:[0-9]*\).*/\1/p' "$log" | head -n1)"
        [ -n "$SERVER_URL" ] && curl -fs "$SERVER_URL/healthz" >/dev/null && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$log" >&2; die "np-server exited"; }
        sleep 0.1
    done
    die "np-server did not start within 30 s"
}

# api METHOD PATH [JSON]: the staff API with the admin token; prints the answer body.
api() {
    local m="$1" p="$2"; shift 2
    curl -fsS -X "$m" -H "Authorization: Bearer $ADMIN_TOKEN" -H 'content-type: application/json' \
        ${1:+--data "$1"} "$SERVER_URL$p"
}

stop_pid() {
    local pid="$1" p keep=()
    kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    for p in "${BENCH_PIDS[@]}"; do [ "$p" != "$pid" ] && keep+=("$p"); done
    BENCH_PIDS=("${keep[@]}")
}

# Sizes: --quick runs small images so that the whole thing is a smoke test of seconds.
bench_sizes() {
    if [ "${BENCH_QUICK:-0}" = 1 ]; then echo "8388608"; else echo "268435456 1073741824"; fi
}
human() { awk -v b="$1" 'BEGIN{ if (b>=1073741824) printf "%g GiB", b/1073741824; else printf "%g MiB", b/1048576 }'; }

# --- Offline trust material (TEST-ONLY keys from firmware-samples/keys) ---
BOX_SERIAL="NR-2000-123456-4"
BOX_MODEL="NR-2000"

keyid_of() { base64 -d < "$1" | sha256sum | cut -c1-64; }

# make_trust DIR: DIR/{keyring,entitlement}.env signed with the TEST-ONLY keys, DIR/device.key.
make_trust() {
    local d="$1" now today end expires root online release device
    mkdir -p "$d"
    now="$(date -u +%Y-%m-%dT%H:%M:%SZ)"; today="$(date -u +%Y-%m-%d)"
    end="$(date -u -d '+1 year' +%Y-%m-%d)"; expires="$(date -u -d '+2 years' +%Y-%m-%dT00:00:00Z)"
    root="$(cat "$KEYS/TEST-ONLY-root.pub")"; online="$(cat "$KEYS/TEST-ONLY-online.pub")"
    release="$(cat "$KEYS/TEST-ONLY-release.pub")"; device="$(cat "$KEYS/TEST-ONLY-device.pub")"
    install -m 0600 "$KEYS/TEST-ONLY-device.key" "$d/device.key"
    cat > "$d/keyring.json" <<JSON
{"version": 1, "expires": "$expires", "root": {"threshold": 1, "keys": ["$root"]},
 "keys": [{"keyid": "$(keyid_of "$KEYS/TEST-ONLY-online.pub")", "public_key": "$online", "roles": ["entitlement", "time"]},
          {"keyid": "$(keyid_of "$KEYS/TEST-ONLY-release.pub")", "public_key": "$release", "roles": ["release"]}]}
JSON
    cat > "$d/entitlement.json" <<JSON
{"serial": "$BOX_SERIAL", "model": "$BOX_MODEL", "device_key": "$device", "sequence": 1,
 "issued_at": "$now", "coverage_end": "$end", "status": "active",
 "terms": [{"kind": "warranty", "start": "$today", "end": "$end"}]}
JSON
    "$NP_BIN/np-vendor" keyring sign --root-key "$KEYS/TEST-ONLY-root.key" \
        --in "$d/keyring.json" --out "$d/keyring.env" >/dev/null || die "keyring sign failed"
    "$NP_BIN/np-vendor" sign --kind entitlement --key "$KEYS/TEST-ONLY-online.key" \
        --in "$d/entitlement.json" --out "$d/entitlement.env" >/dev/null || die "entitlement sign failed"
}

# sign_release DIR VERSION IMAGE RELEASED_AT: DIR/release-VERSION.env
sign_release() {
    local d="$1" v="$2" img="$3" at="$4"
    cat > "$d/release-$v.json" <<JSON
{"product": "n-reporter", "version": "$v", "security_version": 1, "models": ["$BOX_MODEL"],
 "channel": "stable", "released_at": "$at", "min_from_version": "0.1.0",
 "image": {"name": "$(basename "$img")", "size": $(stat -c %s "$img"),
           "sha256": "$(openssl dgst -sha256 -r "$img" | cut -c1-64)"}, "notes": "np-bench"}
JSON
    "$NP_BIN/np-vendor" sign --kind release --key "$KEYS/TEST-ONLY-release.key" \
        --in "$d/release-$v.json" --out "$d/release-$v.env" >/dev/null || die "release sign failed"
}

# agent_config FILE STATE_DIR KEY ROOT_PUB [SERVER_URL]: an agent.toml (docs/formats.md).
agent_config() {
    {
        echo "serial = \"$BOX_SERIAL\""
        echo "model = \"$BOX_MODEL\""
        echo "state_dir = \"$2\""
        echo "device_key = \"$3\""
        if [ -n "${5:-}" ]; then
            printf '[server]\nurl = "%s"\ncheck_interval = "6h"\n' "$5"
        fi
        printf '[trust]\nroot_keys = ["%s"]\n' "$(cat "$4")"
    } > "$1"
}

# json_get KEY: a top-level field of the JSON object on stdin.
json_get() { python3 -c 'import json,sys; v=json.load(sys.stdin).get(sys.argv[1]); print("" if v is None else v)' "$1"; }

# offline_setup: trust material and a 1 MiB 1.0.0 image in $BENCH_TMP/trust.
offline_setup() {
    make_trust "$BENCH_TMP/trust"
    make_image "$BENCH_TMP/trust/n-reporter-1.0.0.img" 1048576
    sign_release "$BENCH_TMP/trust" 1.0.0 "$BENCH_TMP/trust/n-reporter-1.0.0.img" 2026-01-01T00:00:00Z
}

# offline_provision STATE: a fresh offline agent with 1.0.0 in slot a; prints its config path.
offline_provision() {
    local s="$1" t="$BENCH_TMP/trust"
    rm -rf "$s"; mkdir -p "$s"
    agent_config "$s.toml" "$s" "$t/device.key" "$KEYS/TEST-ONLY-root.pub"
    "$NP_BIN/np-agent" --config "$s.toml" provision --manifest "$t/release-1.0.0.env" \
        --image "$t/n-reporter-1.0.0.img" --keyring "$t/keyring.env" \
        --entitlement "$t/entitlement.env" >/dev/null || die "np-agent provision failed"
    echo "$s.toml"
}

# offline_apply_best RUNS BUNDLE: sets APPLY_S and APPLY_RSS (MiB) of the fastest apply.
offline_apply_best() {
    local runs="$1" bundle="$2" r s cfg v
    APPLY_S=""
    for ((r = 0; r < runs; r++)); do
        cfg="$(offline_provision "$BENCH_TMP/state")"
        sync
        timed "$BENCH_TMP/t.agent" "$NP_BIN/np-agent" --config "$cfg" apply "$bundle"
        s="$(secs_of "$BENCH_TMP/t.agent")"
        if [ -z "$APPLY_S" ] || awk -v a="$s" -v b="$APPLY_S" 'BEGIN{exit !(a<b)}'; then
            APPLY_S="$s"; APPLY_RSS="$(rss_mib_of "$BENCH_TMP/t.agent")"
        fi
    done
    v="$("$NP_BIN/np-agent" --config "$cfg" status --json | json_get version)"
    [ "$v" = 2.0.0 ] || die "after apply the agent runs ${v:-?}, not 2.0.0"
    rm -rf "$BENCH_TMP/state"
}

# device_check_in VERSION DEVICE_KEY: one signed check-in of the box with curl (the server
# serves a blob only to a box whose running version it knows).
device_check_in() {
    local p=/api/v1/device/check-in
    printf '{"version": "%s", "slot": "a", "state": "idle", "nonce": "%s"}' "$1" "$(openssl rand -hex 8)" > "$BENCH_TMP/checkin.json"
    "$NP_BIN/np-bench" sign --serial "$BOX_SERIAL" --key "$2" --method POST --path "$p" \
        --body "$BENCH_TMP/checkin.json" > "$BENCH_TMP/checkin.headers"
    curl -fsS -H @"$BENCH_TMP/checkin.headers" -H 'content-type: application/json' \
        --data-binary @"$BENCH_TMP/checkin.json" -o /dev/null "$SERVER_URL$p" || die "the check-in failed"
}

#!/usr/bin/env bash
# The fleet load: release np-server(s) on 127.0.0.1 with fresh data; np-bench registers
# simulated boxes (each with its own Ed25519 device key) and has them check in with signed
# requests at each fleet size, then prints rate, p50/p99, errors, server RSS and the ratio to
# `openssl speed ed25519` sign+verify pairs measured in the same run.
# --stores runs the same load, one after the other in this run, on each store:
#   sled  the embedded default (one server, data folder)
#   pg1   PostgreSQL, one server
#   pg2   PostgreSQL, two replicas on one database and one blob folder; np-bench sends box i
#         to replica i mod 2 (as a load balancer would)
# Each PostgreSQL run gets a fresh database on the server --pg-url names (a role that may
# create databases; default $NP_TEST_PG_URL, else np_test@127.0.0.1:5432), dropped at the end.
# With --guard-compare, each size is measured without a plan (no reports: no guard work), with a
# plan and the rollout guard counting new attempts and failures, and without again (np-bench fleet --help).
# Usage: bench/fleet.sh [--quick] [--sizes 1000,100000] [--seconds 10] [--concurrency 64]
#        [--stores sled,pg1,pg2] [--pg-url URL] [--guard-compare]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
SIZES=1000,100000; SECONDS_EACH=10; CONC=64; GUARD=; STORES=sled
PG_URL="${NP_TEST_PG_URL:-postgres://np_test:np_test@127.0.0.1:5432/postgres}"
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) SIZES=200,1000; SECONDS_EACH=2 ;;
        --sizes) SIZES="$2"; shift ;;
        --seconds) SECONDS_EACH="$2"; shift ;;
        --concurrency) CONC="$2"; shift ;;
        --stores) STORES="$2"; shift ;;
        --pg-url) PG_URL="$2"; shift ;;
        --guard-compare) GUARD=--guard-compare ;;
        *) die "unknown option $1 (use --quick, --sizes, --seconds, --concurrency, --stores, --pg-url, --guard-compare)" ;;
    esac
    shift
done
need_bins np-server np-bench
bench_init
T="$BENCH_TMP"
BENCH_DBS=()

# pg_admin SQL: runs SQL on the --pg-url server.
pg_admin() { psql -X -q -v ON_ERROR_STOP=1 "$PG_URL" -c "$1" >/dev/null; }
# db_url NAME: --pg-url with its database replaced by NAME.
db_url() { echo "${PG_URL%/*}/$1"; }
drop_dbs() {
    local d
    for d in "${BENCH_DBS[@]}"; do pg_admin "DROP DATABASE IF EXISTS $d WITH (FORCE)" || true; done
    bench_cleanup
}
trap drop_dbs EXIT

# start_replica NAME ARGS...: np-server serve with ARGS on 127.0.0.1:0; sets SERVER_PID and
# SERVER_URL of that replica.
start_replica() {
    local name="$1" log="$T/$1.log" i; shift
    RUST_LOG="${RUST_LOG:-warn}" "$NP_BIN/np-server" serve --listen 127.0.0.1:0 "$@" 2>"$log" &
    SERVER_PID=$!
    BENCH_PIDS+=("$SERVER_PID")
    for ((i = 0; i < 300; i++)); do
        SERVER_URL="$(sed -n 's/.*np-server listening on \(http:\/\/127\.0\.0\.1:[0-9]*\).*/\1/p' "$log" | head -n1)"
        [ -n "$SERVER_URL" ] && curl -fs "$SERVER_URL/healthz" >/dev/null && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$log" >&2; die "np-server ($name) exited"; }
        sleep 0.1
    done
    die "np-server ($name) did not start within 30 s"
}

# run_store STORE: fresh server(s) on STORE, the load, then the servers stopped.
run_store() {
    local store="$1" d="$T/$1" urls pids db
    mkdir -p "$d"
    case "$store" in
        sled)
            "$NP_BIN/np-server" init --data "$d/data" > "$d/init" 2>/dev/null || die "np-server init failed"
            start_replica sled --data "$d/data"
            urls="$SERVER_URL"; pids="$SERVER_PID" ;;
        pg1 | pg2)
            command -v psql >/dev/null || die "--stores $store needs psql (Debian's postgresql-client)"
            db="np_bench_$$_$store"
            pg_admin "CREATE DATABASE $db" || die "cannot create database $db on $PG_URL (is PostgreSQL running? see --pg-url)"
            BENCH_DBS+=("$db")
            "$NP_BIN/np-server" init --data "$d/data" --store "$(db_url "$db")" > "$d/init" 2>/dev/null ||
                die "np-server init --store failed"
            # The shared blob folder (a configured one must exist: replicas never create it).
            mkdir -p "$d/data/blobs"
            printf 'data = "%s"\n[store]\nurl = "%s"\n[blobs]\ndir = "%s"\n' \
                "$d/data" "$(db_url "$db")" "$d/data/blobs" > "$d/a.toml"
            start_replica "$store-a" --config "$d/a.toml"
            urls="$SERVER_URL"; pids="$SERVER_PID"
            if [ "$store" = pg2 ]; then
                # The second replica: a copy of the data folder (its keys), the same database
                # and the same blob folder.
                cp -a "$d/data" "$d/data-b"
                printf 'data = "%s"\n[store]\nurl = "%s"\n[blobs]\ndir = "%s"\n' \
                    "$d/data-b" "$(db_url "$db")" "$d/data/blobs" > "$d/b.toml"
                start_replica "$store-b" --config "$d/b.toml"
                urls="$urls,$SERVER_URL"; pids="$pids,$SERVER_PID"
            fi ;;
        *) die "unknown store $store (use sled, pg1, pg2)" ;;
    esac
    ADMIN_TOKEN="$(sed -n 's/^admin token: //p' "$d/init")"
    [ -n "$ADMIN_TOKEN" ] || die "np-server init printed no admin token"
    echo "## fleet load on $store: sizes $SIZES, ${SECONDS_EACH}s each, concurrency $CONC (load $(load1))"
    NP_TOKEN="$ADMIN_TOKEN" "$NP_BIN/np-bench" fleet --server "$urls" --sizes "$SIZES" \
        --seconds "$SECONDS_EACH" --concurrency "$CONC" --server-pid "$pids" $GUARD | sed 's/^/  /'
    echo "  data folder $(du -sh "$d/data" | cut -f1)"
    local p
    for p in ${pids//,/ }; do stop_pid "$p"; done
}

for store in ${STORES//,/ }; do
    run_store "$store"
done

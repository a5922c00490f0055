#!/usr/bin/env bash
# The fleet load: a release np-server on 127.0.0.1 with a fresh data folder; np-bench registers
# simulated boxes (each with its own Ed25519 device key) and has them check in with signed
# requests at each fleet size, then prints rate, p50/p99, errors, server RSS and the ratio to
# `openssl speed ed25519` sign+verify pairs measured in the same run.
# With --guard-compare, each size is measured without a plan (no reports: no guard work), with a
# plan and the rollout guard counting new attempts and failures, and without again (np-bench fleet --help).
# Usage: bench/fleet.sh [--quick] [--sizes 1000,100000] [--seconds 10] [--concurrency 64]
#        [--guard-compare]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
SIZES=1000,100000; SECONDS_EACH=10; CONC=64; GUARD=
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) SIZES=200,1000; SECONDS_EACH=2 ;;
        --sizes) SIZES="$2"; shift ;;
        --seconds) SECONDS_EACH="$2"; shift ;;
        --concurrency) CONC="$2"; shift ;;
        --guard-compare) GUARD=--guard-compare ;;
        *) die "unknown option $1 (use --quick, --sizes, --seconds, --concurrency, --guard-compare)" ;;
    esac
    shift
done
need_bins np-server np-bench
bench_init
T="$BENCH_TMP"
start_server "$T/server" "$T/server.log"
echo "## fleet load: sizes $SIZES, ${SECONDS_EACH}s each, concurrency $CONC (load $(load1))"
NP_TOKEN="$ADMIN_TOKEN" "$NP_BIN/np-bench" fleet --server "$SERVER_URL" --sizes "$SIZES" \
    --seconds "$SECONDS_EACH" --concurrency "$CONC" --server-pid "$SERVER_PID" $GUARD | sed 's/^/  /'
echo "  server data folder $(du -sh "$T/server" | cut -f1)"

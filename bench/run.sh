#!/usr/bin/env bash
# Builds the release binaries and runs every benchmark in one go, printing side-by-side
# ratios measured in the same run: (a) offline apply, (b) online update, (c) blob throughput
# vs nginx, (d) RAUC 1.8 extract, the fleet load, and (e) offline apply into a loop device. Talks only to 127.0.0.1, ends by
# itself, removes its temp folders and stops only the processes it started.
# Usage: bench/run.sh [--quick] [--no-build] [--only offline,online,blobs,rauc,fleet,disks]
#   --quick     8 MiB images, 2-second fleet at 200 and 1,000 boxes (a smoke test)
#   --no-build  use the binaries already in $NP_BIN (default: target/release)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
QUICK=(); BUILD=1; ONLY="offline,online,blobs,rauc,fleet,disks"
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=(--quick) ;;
        --no-build) BUILD=0 ;;
        --only) ONLY="$2"; shift ;;
        *) die "unknown option $1 (use --quick, --no-build, --only LIST)" ;;
    esac
    shift
done
need_pkgs time openssl curl
if [ "$BUILD" = 1 ]; then
    (cd "$REPO_DIR" && cargo build --release --locked -p np-server -p np-agent -p np-bench) ||
        die "the release build failed"
fi
echo "# np benchmarks, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "machine: nproc $(nproc), $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -n1)," \
    "$(awk '/MemTotal/{printf "%.1f GiB RAM", $2/1048576}' /proc/meminfo), kernel $(uname -r)," \
    "disk $(df -h --output=source,fstype "${BENCH_TMPDIR:-/var/tmp}" | tail -n1 | tr -s ' ')"
echo "load before: $(cat /proc/loadavg)"
for part in ${ONLY//,/ }; do
    case "$part" in
        offline | online | blobs | rauc | fleet | disks) "$BENCH_DIR/$part.sh" "${QUICK[@]}" ;;
        *) die "unknown part $part (offline, online, blobs, rauc, fleet, disks)" ;;
    esac
done
echo "load after: $(cat /proc/loadavg)"

#!/bin/sh
# Generates the sample firmware images, byte for byte the same on every machine
# (their sizes and SHA-256 digests are pinned in release-*.json).
# Usage: ./make-samples.sh [OUTDIR]   (default: the images/ folder beside this script)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-"$here/images"}
mkdir -p "$out"
make_image() { # name size text
    yes "$3" | head -c "$2" > "$out/$1.tmp"
    mv "$out/$1.tmp" "$out/$1"
}
make_image n-reporter-5.2.0.img 16384 "N-Reporter 5.2.0 sample firmware image (not a real image)"
make_image n-reporter-5.3.0.img 65536 "N-Reporter 5.3.0 sample firmware image (not a real image)"
make_image n-cloud-2.1.0.img 262144 "N-Cloud 2.1.0 sample firmware image (not a real image)"
echo "sample images written to $out"

#!/usr/bin/env bash
# sign-release.sh BIN_DIR TRUST_DIR VERSION IMAGE [BUNDLE]: TRUST_DIR/release-VERSION.env, a
# release manifest of IMAGE signed with the TEST-ONLY release key, and with BUNDLE an
# offline bundle (keyring, manifest, entitlement, image) built by np-vendor.
set -euo pipefail
bins=$1 tr=$2 v=$3 img=$4 bundle=${5:-}
# Private 0600 copies of the TEST-ONLY keys, beside the trust folder (see build.sh).
keys=$tr/../keys
cat > "$tr/release-$v.json" <<JSON
{"product": "n-reporter", "version": "$v", "security_version": 1, "models": ["NR-2000"],
 "channel": "stable", "released_at": "2026-01-01T00:00:00Z", "min_from_version": "0.1.0",
 "image": {"name": "n-reporter-$v.img", "size": $(stat -c %s "$img"),
           "sha256": "$(sha256sum "$img" | cut -c1-64)"}, "notes": "VM test"}
JSON
"$bins/np-vendor" sign --kind release --key "$keys/TEST-ONLY-release.key" \
    --in "$tr/release-$v.json" --out "$tr/release-$v.env" >/dev/null
if [ -n "$bundle" ]; then
    "$bins/np-vendor" bundle build --manifest "$tr/release-$v.env" --image "$img" \
        --keyring "$tr/keyring.env" --entitlement "$tr/entitlement.env" --out "$bundle" >/dev/null
fi

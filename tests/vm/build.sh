#!/usr/bin/env bash
# Builds what the VM test boots, cached under target/vm/cache/<key> where the key hashes
# every input (np-agent, np-vendor, the kernel, busybox, GRUB, OVMF, these scripts, the
# GRUB script of deploy/grub and the TEST-ONLY keys). Prints the cache folder. Holds:
#   disk.img       GPT: ESP (GRUB + deploy/grub/np-ab.cfg), np-root-a (firmware 1.0.0,
#                  provisioned), np-root-b (empty), np-data (state folder, grubenv and
#                  its backup grubenv.bak)
#   OVMF_VARS.fd   the UEFI variables to copy for each run
#   fw-good.img, fw-panic.img, fw-unhealthy.img   firmware images (ext4 root file systems)
#   bundle-2.0.0.tar (good), bundle-3.0.0.tar (kernel panics), bundle-4.0.0.tar (fails
#   its health check), trust/ (keyring, entitlement, release signing for more bundles)
# Usage: tests/vm/build.sh BIN_DIR KERNEL MAX_TRIES
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
bins=$1 kernel=$2 max_tries=$3
src_keys=$repo/firmware-samples/keys
ovmf_code=/usr/share/OVMF/OVMF_CODE.fd
ovmf_vars=/usr/share/OVMF/OVMF_VARS.fd
busybox=$(command -v busybox)
grub_dir=/usr/lib/grub/x86_64-efi

# --- the layout, in 512-byte sectors (1 MiB = 2048) ---
ESP_START=2048 ESP_SIZE=32768          # 16 MiB
A_START=34816 A_SIZE=98304             # 48 MiB
B_START=133120 B_SIZE=98304            # 48 MiB
DATA_START=231424 DATA_SIZE=262144     # 128 MiB
DISK_MIB=242

key=$(
    {
        sha256sum "$bins/np-agent" "$bins/np-vendor" "$kernel" "$busybox" "$ovmf_code" \
            "$ovmf_vars" "$grub_dir/linux.mod" "$repo/deploy/grub/np-ab.cfg" "$src_keys"/TEST-ONLY-* \
            "$here"/*.sh "$here"/guest/*
        echo "max_tries=$max_tries"
    } | sha256sum | cut -c1-16
)
cache=$repo/target/vm/cache/$key
if [ -e "$cache/done" ]; then
    echo "$cache"
    exit 0
fi
rm -rf "$repo/target/vm/cache"
mkdir -p "$cache"
t=$cache/tmp
mkdir -p "$t"
exec 3>&1 1>"$cache/build.log" 2>&1
# Private copies of the TEST-ONLY keys (np-vendor wants signing keys 0600).
keys=$cache/keys
mkdir -p "$keys"
install -m 0600 "$src_keys"/TEST-ONLY-* "$keys/"

# --- firmware root file systems ---
# fw_tree DIR KIND: a firmware tree (KIND good, unhealthy: busybox, np-agent, init; panic:
# only the kernel, so that the kernel finds no init and panics).
fw_tree() {
    local d=$1 kind=$2 lib
    mkdir -p "$d"/{boot,proc,sys,dev,tmp,data,etc/np-agent,bin,sbin,usr/bin}
    cp "$kernel" "$d/boot/vmlinuz"
    echo "$kind" > "$d/etc/np-fw"
    [ "$kind" = panic ] && return 0
    cp "$busybox" "$d/bin/busybox"
    for app in $("$busybox" --list); do
        [ -e "$d/bin/$app" ] || ln -s busybox "$d/bin/$app"
    done
    install -m 0755 "$here/guest/init" "$d/sbin/init"
    install -m 0755 "$here/guest/np-health" "$d/bin/np-health"
    install -m 0755 "$here/guest/np-reboot" "$d/bin/np-reboot"
    strip -o "$d/usr/bin/np-agent" "$bins/np-agent"
    for lib in $(ldd "$bins/np-agent" | grep -o '/[^ ]*'); do
        mkdir -p "$d$(dirname "$lib")"
        cp -L "$lib" "$d$lib"
    done
    sed -e "s|@ROOT_PUB@|$(cat "$keys/TEST-ONLY-root.pub")|" -e "s|@MAX_TRIES@|$max_tries|" \
        "$here/guest/agent.toml" > "$d/etc/np-agent/agent.toml"
    [ "$kind" = unhealthy ] && touch "$d/etc/np-health-fail"
    return 0
}
# fw_image KIND: $cache/fw-KIND.img, an ext4 file system just larger than its tree.
fw_image() {
    local kind=$1 d=$t/fw-$1 kib
    fw_tree "$d" "$kind"
    kib=$(( $(du -sk "$d" | cut -f1) * 11 / 10 + 2048 ))
    rm -f "$cache/fw-$kind.img"
    mkfs.ext4 -q -F -O ^has_journal -L "np-fw-$kind" -d "$d" "$cache/fw-$kind.img" "${kib}k"
}
fw_image good
fw_image panic
fw_image unhealthy
cp "$cache/fw-good.img" "$cache/fw-factory.img"
# The factory image differs from 2.0.0's by its label only: a different image, same tree.
tune2fs -L np-fw-factory "$cache/fw-factory.img" >/dev/null

# --- trust material and bundles (TEST-ONLY keys) ---
tr=$cache/trust
mkdir -p "$tr"
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
today=$(date -u +%Y-%m-%d)
end=$(date -u -d '+5 years' +%Y-%m-%d)
expires=$(date -u -d '+5 years' +%Y-%m-%dT00:00:00Z)
keyid_of() { base64 -d < "$1" | sha256sum | cut -c1-64; }
cat > "$tr/keyring.json" <<JSON
{"version": 1, "expires": "$expires", "root": {"threshold": 1, "keys": ["$(cat "$keys/TEST-ONLY-root.pub")"]},
 "keys": [{"keyid": "$(keyid_of "$keys/TEST-ONLY-online.pub")", "public_key": "$(cat "$keys/TEST-ONLY-online.pub")", "roles": ["entitlement", "time"]},
          {"keyid": "$(keyid_of "$keys/TEST-ONLY-release.pub")", "public_key": "$(cat "$keys/TEST-ONLY-release.pub")", "roles": ["release"]}]}
JSON
cat > "$tr/entitlement.json" <<JSON
{"serial": "NR-2000-123456-4", "model": "NR-2000", "device_key": null, "sequence": 1,
 "issued_at": "$now", "coverage_end": "$end", "status": "active",
 "terms": [{"kind": "warranty", "start": "$today", "end": "$end"}]}
JSON
"$bins/np-vendor" keyring sign --root-key "$keys/TEST-ONLY-root.key" \
    --in "$tr/keyring.json" --out "$tr/keyring.env" >/dev/null
"$bins/np-vendor" sign --kind entitlement --key "$keys/TEST-ONLY-online.key" \
    --in "$tr/entitlement.json" --out "$tr/entitlement.env" >/dev/null
"$here/sign-release.sh" "$bins" "$tr" 1.0.0 "$cache/fw-factory.img"
"$here/sign-release.sh" "$bins" "$tr" 2.0.0 "$cache/fw-good.img" "$cache/bundle-2.0.0.tar"
"$here/sign-release.sh" "$bins" "$tr" 3.0.0 "$cache/fw-panic.img" "$cache/bundle-3.0.0.tar"
"$here/sign-release.sh" "$bins" "$tr" 4.0.0 "$cache/fw-unhealthy.img" "$cache/bundle-4.0.0.tar"

# --- the data partition: provisioned with 1.0.0 in slot a (the factory step, on the host:
# slot a is a file the size of the partition, written into the disk afterwards) ---
p=$t/provision
mkdir -p "$p/data/np"
truncate -s $((A_SIZE * 512)) "$p/root-a.img"
truncate -s $((B_SIZE * 512)) "$p/root-b.img"
grub-editenv "$p/data/np/grubenv" create
cat > "$p/agent.toml" <<TOML
serial = "NR-2000-123456-4"
model = "NR-2000"
state_dir = "$p/data/np/state"
device_key = "$p/data/np/device.key"
[trust]
root_keys = ["$(cat "$keys/TEST-ONLY-root.pub")"]
[install]
max_boot_attempts = $max_tries
# The box's own config restarts it with /bin/np-reboot; the factory step never restarts.
reboot_command = "true"
[slots]
a = "$p/root-a.img"
b = "$p/root-b.img"
[boot]
loader = "grub"
grubenv = "$p/data/np/grubenv"
TOML
"$bins/np-agent" --config "$p/agent.toml" provision --manifest "$tr/release-1.0.0.env" \
    --image "$cache/fw-factory.img" --keyring "$tr/keyring.env" --entitlement "$tr/entitlement.env"
grub-editenv "$p/data/np/grubenv" list
# The agent keeps the block twice: the primary and its backup beside it (grubenv.bak), the
# same 1024 bytes once provisioned.
grub-editenv "$p/data/np/grubenv.bak" list
cmp "$p/data/np/grubenv" "$p/data/np/grubenv.bak"

# --- the EFI system partition: a standalone GRUB with the shipped script embedded ---
grub-mkstandalone -O x86_64-efi -o "$t/BOOTX64.EFI" \
    --modules="part_gpt ext2 fat normal linux echo test loadenv search search_fs_file regexp probe" \
    --install-modules="part_gpt ext2 fat normal linux echo test loadenv search search_fs_file regexp probe configfile" \
    --locales= --fonts= --themes= \
    "boot/grub/grub.cfg=$here/guest/grub.cfg" "boot/grub/np-ab.cfg=$repo/deploy/grub/np-ab.cfg"
rm -f "$t/esp.img"
mkfs.vfat -C "$t/esp.img" $((ESP_SIZE / 2)) >/dev/null
mmd -i "$t/esp.img" ::/EFI ::/EFI/BOOT
mcopy -i "$t/esp.img" "$t/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI

# --- the disk ---
disk=$cache/disk.img
rm -f "$disk"
truncate -s "${DISK_MIB}M" "$disk"
sfdisk -q "$disk" <<SFDISK
label: gpt
first-lba: 2048
start=$ESP_START, size=$ESP_SIZE, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="EFI system"
start=$A_START, size=$A_SIZE, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="np-root-a"
start=$B_START, size=$B_SIZE, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="np-root-b"
start=$DATA_START, size=$DATA_SIZE, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="np-data"
SFDISK
dd if="$t/esp.img" of="$disk" bs=512 seek=$ESP_START conv=notrunc status=none
dd if="$p/root-a.img" of="$disk" bs=512 seek=$A_START conv=notrunc status=none
# The data partition, without inline_data (GRUB's save_env writes the grubenv's blocks).
mkfs.ext4 -q -F -O ^inline_data -L np-data -d "$p/data" -E offset=$((DATA_START * 512)) \
    "$disk" $((DATA_SIZE / 2))k
cp "$ovmf_vars" "$cache/OVMF_VARS.fd"
rm -rf "$t"
touch "$cache/done"
echo "$cache" >&3

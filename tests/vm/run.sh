#!/usr/bin/env bash
# The VM test: np-agent, the GRUB script of deploy/grub and real A/B root partitions, booted
# in QEMU (UEFI firmware OVMF, no network). Offline bundles are written into the data
# partition's inbox while the VM is off; the test reads the serial console and the data
# partition. It shows, in order:
#   install   a 2.0.0 bundle installs into slot b, the VM reboots into it (np.slot=b), the
#             health check passes, 2.0.0 is committed;
#   panic     a 3.0.0 whose kernel panics is given up by GRUB after max_boot_attempts
#             boots; np-agent, back on slot b, reports rolled_back;
#   health    a 4.0.0 that fails its health check is rolled back by np-agent;
#   torn      the primary grubenv torn (its first sector gone): GRUB boots from the
#             backup grubenv.bak, np-agent rewrites the primary;
#   round     both slots whole and out of tries: GRUB starts a new round from the first
#             slot; the block found by np_env_uuid, and by the scan when no partition
#             has that UUID;
#   cuts      N times: a newer bundle, the VM killed (SIGKILL to QEMU: a power cut) at a
#             random instant of the install, then booted normally: every boot must reach a
#             committed firmware and the box must end on the new version.
# Usage: tests/vm/run.sh [--cuts N] (default 3). Exit 0: passed; 1: failed; 2: cannot run
# here (the one-line reason says what is missing).
# Environment: NP_BIN_DIR (default target/debug), NP_VM_KERNEL (default: Debian's cloud
# kernel fetched into target/vm/kernel), NP_VM_ACCEL (kvm or tcg; default: kvm when a KVM
# boot works, tcg otherwise), NP_VM_MAX_TRIES (default 3).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

cuts=3
while [ $# -gt 0 ]; do
    case "$1" in
        --cuts) cuts=${2:-}; shift 2 || true ;;
        --cuts=*) cuts=${1#--cuts=}; shift ;;
        -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "tests/vm/run.sh: unknown argument $1 (usage: tests/vm/run.sh [--cuts N])" >&2; exit 2 ;;
    esac
done
case "$cuts" in ''|*[!0-9]*) echo "tests/vm/run.sh: --cuts needs a number, got '$cuts'" >&2; exit 2 ;; esac

cannot() { echo "VM test cannot run: $*"; exit 2; }
fail() {
    echo "VM test FAILED: $*"
    [ -n "${LAST_LOG:-}" ] && { echo "--- last serial log ($LAST_LOG):"; tail -n 40 "$LAST_LOG"; }
    # Keep this run's logs (not the disk) for a look afterwards: the next run starts afresh.
    if [ -n "${run:-}" ] && [ -d "$run" ]; then
        kept=$repo/target/vm/failed-$(date -u +%Y%m%dT%H%M%S)
        mkdir -p "$kept" && cp "$run"/*.log* "$run"/grubenv "$run"/grubenv.bak "$kept"/ 2>/dev/null || true
        echo "--- logs kept in $kept"
    fi
    exit 1
}
say() { echo "[vm $(date -u +%H:%M:%S)] $*"; }

need() { command -v "$1" >/dev/null 2>&1 || cannot "$1 is missing (apt-get install $2)"; }
need qemu-system-x86_64 qemu-system-x86
need grub-mkstandalone grub-common
need grub-editenv grub-common
need mkfs.vfat dosfstools
need mcopy mtools
need sfdisk fdisk
need mkfs.ext4 e2fsprogs
need debugfs e2fsprogs
need busybox busybox-static
[ -e /usr/lib/grub/x86_64-efi/linux.mod ] || cannot "GRUB's EFI modules are missing (apt-get install grub-efi-amd64-bin)"
[ -e /usr/share/OVMF/OVMF_CODE.fd ] || cannot "OVMF is missing (apt-get install ovmf)"
busybox --list 2>/dev/null | grep -x poweroff >/dev/null || cannot "busybox is not busybox-static's full build (apt-get install busybox-static)"
bins=${NP_BIN_DIR:-$repo/target/debug}
for b in np-agent np-vendor; do
    [ -x "$bins/$b" ] || cannot "$bins/$b is missing (cargo build --bins)"
done
kernel=${NP_VM_KERNEL:-$repo/target/vm/kernel/vmlinuz}
if [ ! -s "$kernel" ]; then
    [ -z "${NP_VM_KERNEL:-}" ] && "$here/fetch-kernel.sh" >/dev/null 2>&1 || true
    [ -s "$kernel" ] || cannot "no kernel at $kernel (run tests/vm/fetch-kernel.sh, which needs apt-get download)"
fi
MAX_TRIES=${NP_VM_MAX_TRIES:-3}
BOOT_TIMEOUT=${NP_VM_BOOT_TIMEOUT:-300}

# One VM test at a time on this checkout (they share target/vm).
mkdir -p "$repo/target/vm"
exec 9>"$repo/target/vm/.lock"
flock -w 3600 9 || cannot "another VM test holds $repo/target/vm/.lock"
QEMU_PID=""
stop_qemu() { if [ -n "$QEMU_PID" ]; then kill -9 "$QEMU_PID" 2>/dev/null || true; fi; }
trap stop_qemu EXIT
trap 'exit 1' INT TERM

say "building the disk and firmware (cached by their inputs)"
cache=$("$here/build.sh" "$bins" "$kernel" "$MAX_TRIES") ||
    fail "building the VM disk failed: $(ls -t "$repo"/target/vm/cache/*/build.log 2>/dev/null | head -n1)"
say "cache: $cache"
run=$repo/target/vm/run
rm -rf "$run"
mkdir -p "$run"
cp --sparse=always "$cache/disk.img" "$run/disk.img"
cp "$cache/OVMF_VARS.fd" "$run/OVMF_VARS.fd"
DATA="$run/disk.img?offset=$((231424 * 512))"

# --- QEMU ---
qemu_args() { # ACCEL DISK VARS
    local cpu=max
    [ "$1" = kvm ] && cpu=host
    echo -machine q35 -m 256 -accel "$1" -cpu "$cpu" -nodefaults -display none -no-reboot \
        -nic none -monitor none \
        -drive if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE.fd \
        -drive if=pflash,format=raw,file="$3" \
        -drive file="$2",format=raw,if=none,id=d0,cache=writeback \
        -device nvme,drive=d0,serial=np0
}

ACCEL=${NP_VM_ACCEL:-}
if [ -z "$ACCEL" ]; then
    ACCEL=tcg
    if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
        # KVM where it works: one throwaway boot must reach the power-off.
        cp --sparse=always "$cache/disk.img" "$run/probe.img"
        cp "$cache/OVMF_VARS.fd" "$run/probe-vars.fd"
        # shellcheck disable=SC2046
        (timeout 60 qemu-system-x86_64 $(qemu_args kvm "$run/probe.img" "$run/probe-vars.fd") \
            -serial file:"$run/probe.log" >/dev/null 2>&1) 2>/dev/null || true
        grep -q "NP-VM: poweroff" "$run/probe.log" 2>/dev/null && ACCEL=kvm
        rm -f "$run/probe.img" "$run/probe-vars.fd"
    fi
fi
say "accelerator: $ACCEL$([ "$ACCEL" = tcg ] && echo ' (software emulation)')"

BOOTS=0
# boot_vm NAME [KILL_DELAY]: boots the VM once, until it powers off, reboots (QEMU exits
# with -no-reboot), or, with KILL_DELAY, until KILL_DELAY seconds after np-agent starts
# applying a bundle: then QEMU is killed (a power cut). Sets LAST_LOG and BOOT_END
# (poweroff, reboot, panic, fail, cut, hung, exit) and APPLY_SECS (apply to QEMU's end).
boot_vm() {
    local name=$1 kill_delay=${2:-} pid t0 t_apply="" now
    BOOTS=$((BOOTS + 1))
    LAST_LOG=$run/$(printf '%03d' "$BOOTS")-$name.log
    # shellcheck disable=SC2046
    qemu-system-x86_64 $(qemu_args "$ACCEL" "$run/disk.img" "$run/OVMF_VARS.fd") \
        -serial file:"$LAST_LOG" >"$LAST_LOG.qemu" 2>&1 &
    pid=$!
    QEMU_PID=$pid
    t0=$(date +%s.%N)
    BOOT_END=""
    APPLY_SECS=""
    while kill -0 "$pid" 2>/dev/null; do
        sleep 0.2
        now=$(date +%s.%N)
        if [ -z "$t_apply" ] && grep -q "applying bundle" "$LAST_LOG" 2>/dev/null; then
            t_apply=$now
        fi
        if [ -n "$kill_delay" ] && [ -n "$t_apply" ] &&
            awk -v a="$now" -v b="$t_apply" -v d="$kill_delay" 'BEGIN{exit !(a-b>=d)}'; then
            kill -9 "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
            BOOT_END=cut
            return 0
        fi
        if awk -v a="$now" -v b="$t0" -v d="$BOOT_TIMEOUT" 'BEGIN{exit !(a-b>=d)}'; then
            kill -9 "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
            BOOT_END=hung
            return 0
        fi
    done
    wait "$pid" 2>/dev/null || true
    [ -n "$t_apply" ] && APPLY_SECS=$(awk -v a="$(date +%s.%N)" -v b="$t_apply" 'BEGIN{printf "%.1f", a-b}')
    if grep -q "NP-VM: FAIL" "$LAST_LOG"; then BOOT_END=fail
    elif grep -q "NP-VM: poweroff" "$LAST_LOG"; then BOOT_END=poweroff
    elif grep -q "Kernel panic" "$LAST_LOG"; then BOOT_END=panic
    elif grep -qE "NP-VM: reboot|reboot: Restarting system" "$LAST_LOG"; then BOOT_END=reboot
    else BOOT_END=exit
    fi
}

# booted_slot: the slot GRUB booted in the last boot (its np.slot=, as the guest's init
# read it from /proc/cmdline), "-" when the boot did not reach it.
booted_slot() {
    local s
    s=$(grep -ao 'NP-VM: boot slot=[ab]' "$LAST_LOG" | head -n1 | cut -d= -f2)
    [ -z "$s" ] && s=$(grep -ao 'NP-GRUB: booting slot [ab]' "$LAST_LOG" | head -n1 | awk '{print $NF}')
    echo "${s:--}"
}

# run_vm NAME: boots until the VM powers itself off (np-agent idle, inbox empty). Sets
# SLOTS (the booted slots, e.g. "a b"), PANICS, STATUS (the last status JSON) and
# BRICKED (boots that did not reach user space or whose agent did not come up).
run_vm() {
    local name=$1 i
    SLOTS="" PANICS=0 BRICKED=0 STATUS="" APPLY=""
    for ((i = 0; i < 3 * MAX_TRIES + 6; i++)); do
        boot_vm "$name"
        SLOTS="$SLOTS $(booted_slot)"
        [ -n "$APPLY_SECS" ] && [ -z "$APPLY" ] && APPLY=$APPLY_SECS
        case "$BOOT_END" in
            poweroff)
                STATUS=$(grep -a "NP-VM: status " "$LAST_LOG" | tail -n1 | sed 's/.*NP-VM: status //' | tr -d '\r')
                SLOTS=${SLOTS# }
                return 0 ;;
            reboot) ;;
            panic)
                if grep -q "No working init found" "$LAST_LOG"; then
                    PANICS=$((PANICS + 1))  # the firmware built to panic
                else
                    BRICKED=$((BRICKED + 1)); say "$name: boot $BOOTS: a kernel panic ($LAST_LOG)"
                fi ;;
            fail) fail "$name: the guest reports a failure" ;;
            *) BRICKED=$((BRICKED + 1)); say "$name: boot $BOOTS ended with '$BOOT_END' ($LAST_LOG)"
               [ "$BOOT_END" = hung ] && return 0 ;;
        esac
    done
    fail "$name: the VM did not settle within $i boots (slots:$SLOTS)"
}

json() { # KEY.PATH: a field of STATUS
    python3 -c 'import json,sys
v=json.loads(sys.argv[1])
for k in sys.argv[2].split("."): v=v.get(k) if isinstance(v,dict) else None
print("" if v is None else v)' "$STATUS" "$1"
}
data_cat() { debugfs -R "cat $1" "$DATA" 2>/dev/null; }
# grubenv_list: the variables GRUB uses (the primary when it carries NP_ORDER, else the
# backup grubenv.bak); both copies are kept in $run for a look after a failure.
grubenv_list() {
    data_cat /np/grubenv > "$run/grubenv"
    data_cat /np/grubenv.bak > "$run/grubenv.bak"
    if grub-editenv "$run/grubenv" list 2>/dev/null | grep -q '^NP_ORDER='; then
        grub-editenv "$run/grubenv" list
    else
        grub-editenv "$run/grubenv.bak" list
    fi
}
# grubenv_copies WHAT: once the agent is idle both copies must be whole and the same.
grubenv_copies() {
    grubenv_list >/dev/null
    [ "$(stat -c %s "$run/grubenv")" = 1024 ] || fail "$1: the grubenv is not a 1024-byte block"
    cmp -s "$run/grubenv" "$run/grubenv.bak" ||
        fail "$1: grubenv and grubenv.bak differ: $(grub-editenv "$run/grubenv" list | tr '\n' ' ')/ $(grub-editenv "$run/grubenv.bak" list 2>&1 | tr '\n' ' ')"
}
drop_bundle() { # FILE NAME
    debugfs -w -R "write $1 /np/state/inbox/$2" "$DATA" >/dev/null 2>&1 || fail "cannot write $2 into the inbox"
}
clean_processed() { # drops applied and rejected bundles so that the data partition stays small
    local d f
    for d in inbox/applied inbox/rejected processed/applied processed/rejected; do
        for f in $(debugfs -R "ls -p /np/state/$d" "$DATA" 2>/dev/null | awk -F/ '$3 ~ /^100/ {print $6}'); do
            debugfs -w -R "rm /np/state/$d/$f" "$DATA" >/dev/null 2>&1
        done
    done
}
expect() { # WHAT GOT WANT
    [ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"
}
expect_env() { # VAR VALUE
    local got
    got=$(grubenv_list | sed -n "s/^$1=//p")
    expect "grubenv $1" "$got" "$2"
}

# --- 1. install, reboot into the other slot, health check, commit ---
say "install: 2.0.0 dropped into the inbox"
drop_bundle "$cache/bundle-2.0.0.tar" n-reporter-2.0.0.tar
run_vm install
expect "install: boots that did not reach user space" "$BRICKED" 0
expect "install: booted slots" "$SLOTS" "a b"
expect "install: version" "$(json version)" "2.0.0"
expect "install: active slot" "$(json active_slot)" "b"
expect "install: booted slot" "$(json booted_slot)" "b"
expect "install: outcome" "$(json last_result.outcome)" "installed"
grep -q "NP-VM: health check passes" "$LAST_LOG" || fail "install: no health check on slot b"
expect_env NP_ORDER "b a"
expect_env NP_B_OK 1
expect_env NP_B_TRY 0
grubenv_copies install
INSTALL_SECS=${APPLY:-20}
say "install: PASS (slots $SLOTS; apply to reboot ${INSTALL_SECS}s)"

# --- 2. a firmware whose kernel panics: GRUB gives up on it ---
clean_processed
say "panic: 3.0.0 (its kernel finds no init) dropped into the inbox"
drop_bundle "$cache/bundle-3.0.0.tar" n-reporter-3.0.0.tar
run_vm panic
expect "panic: boots that did not reach user space unexpectedly" "$BRICKED" 0
expect "panic: kernel panics" "$PANICS" "$MAX_TRIES"
expect "panic: version" "$(json version)" "2.0.0"
expect "panic: active slot" "$(json active_slot)" "b"
expect "panic: outcome" "$(json last_result.outcome)" "rolled_back"
detail=$(json last_result.detail)
case "$detail" in
    *"slot b"*"slot a"*"$MAX_TRIES boot attempts"*) ;;
    *) fail "panic: the detail names no slots and attempts: $detail" ;;
esac
expect_env NP_A_OK 0
expect_env NP_ORDER "b a"
grubenv_copies panic
say "panic: PASS (slots $SLOTS; $detail)"

# --- 3. a firmware whose health check fails: np-agent rolls back ---
clean_processed
say "health: 4.0.0 (fails its health check) dropped into the inbox"
drop_bundle "$cache/bundle-4.0.0.tar" n-reporter-4.0.0.tar
run_vm health
expect "health: boots that did not reach user space" "$BRICKED" 0
expect "health: booted slots" "$SLOTS" "b a b"
expect "health: version" "$(json version)" "2.0.0"
expect "health: outcome" "$(json last_result.outcome)" "rolled_back"
case "$(json last_result.detail)" in
    *"health check failed"*) ;;
    *) fail "health: the detail does not name the health check: $(json last_result.detail)" ;;
esac
expect_env NP_A_OK 0
grubenv_copies health
say "health: PASS (slots $SLOTS)"

# --- 4. a torn primary grubenv: GRUB boots from its backup, np-agent repairs it ---
grubenv_list >/dev/null
{ head -c 512 /dev/zero; tail -c 512 "$run/grubenv"; } > "$run/grubenv.torn"
debugfs -w -R "rm /np/grubenv" "$DATA" >/dev/null 2>&1 || fail "torn: cannot remove /np/grubenv"
debugfs -w -R "write $run/grubenv.torn /np/grubenv" "$DATA" >/dev/null 2>&1 ||
    fail "torn: cannot write the torn /np/grubenv"
debugfs -w -R "sif /np/grubenv mode 0100600" "$DATA" >/dev/null 2>&1 || true
grub-editenv "$run/grubenv.torn" list >/dev/null 2>&1 && fail "torn: the torn block still reads"
run_vm torn
expect "torn: boots that did not reach user space" "$BRICKED" 0
expect "torn: booted slots" "$SLOTS" "b"
grep -aq "NP-GRUB: block backup" "$LAST_LOG" || fail "torn: GRUB did not boot from the backup"
expect "torn: version" "$(json version)" "2.0.0"
expect "torn: phase" "$(json phase)" "idle"
grubenv_copies torn
say "torn: PASS (GRUB booted slot b from grubenv.bak; np-agent rewrote grubenv)"

# --- 4b. both slots whole and out of tries: GRUB starts a new round (never one slot
# uncounted forever); the block found by its file system's UUID (np_env_uuid), on the boot
# disk only ---
grubenv_list >/dev/null
cp "$run/grubenv" "$run/grubenv.round"
grub-editenv "$run/grubenv.round" set NP_A_OK=1 NP_A_TRY="$MAX_TRIES" NP_B_TRY="$MAX_TRIES"
for f in grubenv grubenv.bak; do
    debugfs -w -R "rm /np/$f" "$DATA" >/dev/null 2>&1 || fail "round: cannot remove /np/$f"
    debugfs -w -R "write $run/grubenv.round /np/$f" "$DATA" >/dev/null 2>&1 ||
        fail "round: cannot write /np/$f"
    debugfs -w -R "sif /np/$f mode 0100600" "$DATA" >/dev/null 2>&1 || true
done
data_uuid=$(debugfs -R stats "$DATA" 2>/dev/null | sed -n 's/^Filesystem UUID: *//p')
[ -n "$data_uuid" ] || fail "round: cannot read the data partition's UUID"
ESP="$run/disk.img@@$((2048 * 512))"
esp_cfg() { # TEXT: the VM's grub.cfg sources EFI/BOOT/np-test.cfg when it exists
    printf '%s\n' "$1" > "$run/np-test.cfg"
    mcopy -o -i "$ESP" "$run/np-test.cfg" ::/EFI/BOOT/np-test.cfg || fail "cannot write np-test.cfg"
}
esp_cfg "set np_env_uuid=$data_uuid"
run_vm round
expect "round: boots that did not reach user space" "$BRICKED" 0
expect "round: booted slots" "$SLOTS" "b"
grep -aq "NP-GRUB: both slots out of tries" "$LAST_LOG" || fail "round: GRUB did not start a new round"
grep -aq "has the file system UUID" "$LAST_LOG" && fail "round: GRUB did not find the block by np_env_uuid"
expect "round: version" "$(json version)" "2.0.0"
expect_env NP_B_TRY 0
expect_env NP_A_TRY 0
# A UUID no partition of the boot disk has: said on the console, and the block is found by
# looking at the partitions (the slots' left out).
esp_cfg "set np_env_uuid=00000000-0000-4000-8000-000000000000"
run_vm uuid
expect "uuid: booted slots" "$SLOTS" "b"
# (GRUB wraps its console lines at 80 columns.)
tr -s '\r\n' '  ' < "$LAST_LOG" |
    grep -aq "no partition of hd0 has the file system UUID 00000000-0000-4000-8000-000000000000" ||
    fail "uuid: GRUB did not say that no partition has the UUID"
expect "uuid: version" "$(json version)" "2.0.0"
mdel -i "$ESP" ::/EFI/BOOT/np-test.cfg || fail "cannot remove np-test.cfg"
grubenv_copies round
say "round: PASS (both slots out of tries: GRUB counted again from slot b; the block found by np_env_uuid, and by the scan when the UUID matches nothing)"

# --- 5. power cuts during installs ---
cut_boots=0 bricked=0 done_cuts=0 round=0
while [ "$done_cuts" -lt "$cuts" ]; do
    round=$((round + 1))
    [ "$round" -le $((2 * cuts + 3)) ] || fail "only $done_cuts of $cuts installs could be cut"
    v=5.0.$round
    clean_processed
    "$here/sign-release.sh" "$bins" "$cache/trust" "$v" "$cache/fw-good.img" "$run/bundle.tar" ||
        fail "cannot build the $v bundle"
    drop_bundle "$run/bundle.tar" "n-reporter-$v.tar"
    rm -f "$run/bundle.tar"
    # A random instant between the start of the apply and the reboot into the new slot.
    delay=$(awk -v d="$INSTALL_SECS" -v r="$RANDOM" 'BEGIN{printf "%.2f", 0.9*d*r/32768}')
    b0=$BOOTS
    boot_vm "cut$round" "$delay"
    if [ "$BOOT_END" = cut ]; then
        done_cuts=$((done_cuts + 1))
        what="cut $done_cuts at ${delay}s after the apply began"
    else
        what="$v: the install ended before its cut at ${delay}s ($BOOT_END)"
        # Aim the next cuts inside the shortest install seen (the host's load varies).
        [ -n "$APPLY_SECS" ] && INSTALL_SECS=$(awk -v a="$APPLY_SECS" -v b="$INSTALL_SECS" 'BEGIN{print (a<b)?a:b}')
        case "$BOOT_END" in poweroff|reboot) ;; *) bricked=$((bricked + 1)) ;; esac
    fi
    SLOTS=""
    if [ "$BOOT_END" != poweroff ]; then
        run_vm "after-cut$round"
        bricked=$((bricked + BRICKED))
    fi
    cut_boots=$((cut_boots + BOOTS - b0))
    st_v=$(json version) st_p=$(json phase)
    [ "$st_v" = "$v" ] && [ "$st_p" = idle ] ||
        fail "$what: the box runs ${st_v:-nothing} (${st_p:-no status}), not a committed $v"
    first=$(grubenv_list | sed -n 's/^NP_ORDER=\(.\).*/\1/p')
    expect "$what: GRUB tries the active slot first" "$first" "$(json active_slot)"
    grubenv_copies "$what"
    say "$what; then booted slots ${SLOTS:-none}: $v committed in slot $(json active_slot)"
done
say "all scenarios passed; $BOOTS boots in all"
[ "$bricked" = 0 ] || { echo "$done_cuts cuts, $cut_boots boots, $bricked bricked"; fail "$bricked boots did not reach a committed firmware"; }
echo "$done_cuts cuts, $cut_boots boots, $bricked bricked"

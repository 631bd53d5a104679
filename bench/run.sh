#!/usr/bin/env bash
# Benchmark: start-to-exit latency of `run --rm --network none busybox true`, in one run:
#   hako run   vs   podman run (crun, runc)   vs   the OCI runtimes alone on a bundle (hako runtime,
#   crun, runc, youki if installed)   vs   unshare of the same namespaces (the floor).
# Then the idle RSS of hako's daemon and of one container monitor.
# Env: HAKO (binary), RUNS (default 30), ROUNDS (default 5: hako run and podman run with crun
# alternate in rounds of RUNS/ROUNDS runs each, as do hako-runtime and crun), SKIP_HAKO=1,
# TMPDIR (default /var/tmp).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HAKO=${HAKO:-$REPO_ROOT/target/release/hako}
RUNS=${RUNS:-30}
ROUNDS=${ROUNDS:-5}
SKIP_HAKO=${SKIP_HAKO:-0}
ID=hako-bench-run                  # fixed container id for the bare runtimes; `run` deletes it on exit

die() { echo "run.sh: $*" >&2; exit 1; }

# ---- prerequisites ----
for t in podman crun runc hyperfine jq unshare tar; do
  command -v "$t" >/dev/null || die "$t not found (apt-get install -y podman crun runc hyperfine jq)"
done
[ "$SKIP_HAKO" = 1 ] || [ -x "$HAKO" ] ||
  die "hako binary not found at $HAKO (scripts/build.sh, or set HAKO=, or SKIP_HAKO=1)"
[ "$(id -u)" = 0 ] || die "run as root (podman overlay storage, runtimes, cgroup mounts)"
YOUKI=$(command -v youki || true)
RUNTIME_BIN=$(dirname "$HAKO")/hako-runtime
for b in "$HAKO" "$RUNTIME_BIN"; do
  if [ "$SKIP_HAKO" != 1 ] && readelf -l "$b" 2>/dev/null | grep -q 'INTERP'; then
    echo "warning: $b is dynamically linked (a plain cargo build): scripts/build.sh links it" \
      "statically, as it is meant to run" >&2
  fi
done

# ---- scratch area and cleanup ----
TMP=$(mktemp -d "${TMPDIR:-/var/tmp}/hako-bench-run.XXXXXX")
# podman refuses a runroot path longer than 50 characters
((${#TMP} + 11 <= 50)) || { rmdir "$TMP"; die "TMPDIR too long for podman's runroot: use a shorter one"; }
HAKO_PID='' MON_CID='' PODMAN_USED=0 HUGETLB=/sys/fs/cgroup/hugetlb HUGETLB_MOUNTED=0 HUGETLB_MKDIR=0

podman_release() {  # once, whichever way the run ends
  [ "$PODMAN_USED" = 1 ] || return 0
  PODMAN_USED=0
  podman_teardown
}
hugetlb_release() {
  [ "$HUGETLB_MOUNTED" = 1 ] || return 0
  # Unmounting a v1 hierarchy that still has child cgroups keeps it alive unseen, and hugetlb
  # would never return to cgroup2: leave it mounted and say so instead.
  local left; left=$(find "$HUGETLB" -mindepth 1 -type d 2>/dev/null)
  [ -z "$left" ] || { echo "warning: cgroups left in $HUGETLB, not unmounting it: $left" >&2; return 0; }
  umount "$HUGETLB" || return 0
  HUGETLB_MOUNTED=0
  # An umount racing the release of a just-removed child cgroup leaves the hierarchy alive but
  # unmounted, and hugetlb off cgroup2 for good (seen here): mount and unmount it again until
  # /proc/cgroups shows hugetlb back on hierarchy 0.
  local i
  for i in 1 2 3 4 5 6 7 8 9 10; do
    hugetlb_on_v2 && break; sleep 0.5; hugetlb_on_v2 && break
    mount -t cgroup -o hugetlb cgroup "$HUGETLB" && umount "$HUGETLB"
  done
  hugetlb_on_v2 || { echo "warning: hugetlb still held by a v1 hierarchy (a mount namespace copied" \
    "while it was mounted?): mount it on $HUGETLB and unmount it again later" >&2; return 0; }
  [ "$HUGETLB_MKDIR" = 1 ] && rmdir "$HUGETLB"
  return 0
}
hugetlb_on_v2() { awk '$1 == "hugetlb" { f = ($2 == 0) } END { exit !f }' /proc/cgroups; }
stop_hako() {
  [ -n "$HAKO_PID" ] || return 0
  kill -TERM "$HAKO_PID" 2>/dev/null
  wait "$HAKO_PID" 2>/dev/null
  HAKO_PID=''
}
cleanup() {
  set +e
  [ -n "$MON_CID" ] && $HAKOC rm -f "$MON_CID" >/dev/null 2>&1
  stop_hako
  for rt in crun runc youki; do   # a run interrupted mid-way may leave its container behind
    [ -d "$TMP/$rt-state" ] && "$rt" --root "$TMP/$rt-state" delete -f "$ID" >/dev/null 2>&1
  done
  podman_release
  hugetlb_release
  umount_under "$TMP"   # then rm never crosses into a mount it could not undo
  rm -rf --one-file-system "$TMP" || echo "warning: could not remove all of $TMP" >&2
}
trap cleanup EXIT
trap 'exit 130' INT TERM

podman_private

# ---- the same busybox rootfs for everyone ----
TARBALL=$("$REPO_ROOT/scripts/images.sh" --only busybox --no-import)
# OCI bundle for the bare runtimes: `runc spec` defaults (pid, network, ipc, uts, mount
# namespaces, read-only root), only the process changed.
B=$TMP/bundle
mkdir -p "$B/rootfs"
tar --numeric-owner -xzf "$TARBALL" -C "$B/rootfs"
runc spec --bundle "$B"
jq '.process.args = ["true"] | .process.terminal = false' "$B/config.json" > "$B/config.tmp"
mv "$B/config.tmp" "$B/config.json"

# ---- timing ----
declare -A MED FAILED   # name -> median of the successful runs, ms; name -> failed runs
# bench NAME CMD [PREPARE [N]]: -N runs CMD without a shell, so the ~3 ms floor carries no
# shell start-up estimate; PREPARE (untimed) runs before each run; N runs (default RUNS).
# Called again for the same NAME (rounds), it adds to the runs the median is taken over. A
# peer that fails is a broken setup: stop. hako is under development and its failures are
# intermittent: count them and report them (with the daemon's warnings) instead of losing
# the whole comparison.
bench() {
  local name=$1 cmd=$2 opts=() n=${4:-$RUNS}
  [ -z "${3:-}" ] || opts+=(--prepare "$3")
  [ "$name" != hako ] || opts+=(--ignore-failure)
  echo "== $name: $cmd"
  if ! hyperfine -N --style basic --warmup 3 --runs "$n" "${opts[@]}" \
    --export-json "$TMP/$name.json" "$cmd"; then
    echo "$name failed; once more with its output:" >&2   # hyperfine hides it
    $cmd >&2 || true
    die "$name: benchmark failed"
  fi
  jq -c '.results[0] | [.times, .exit_codes] | transpose | .[]' "$TMP/$name.json" >> "$TMP/$name.runs"
  FAILED[$name]=$(jq -s '[.[] | select(.[1] != 0)] | length' "$TMP/$name.runs")
  MED[$name]=$(jq -s 'map(select(.[1] == 0) | .[0])
    | sort | if length == 0 then empty else (.[(length - 1) / 2 | floor] + .[length / 2 | floor]) / 2 * 1000 end' \
    "$TMP/$name.runs")
}
# bench_runtime RT [CMD [N]]: create + start + wait + delete in one `RT run` (no --detach: it
# deletes on exit). The prepare step only matters if a run was cut short: a stale id would
# fail the next. RT is the runtime's name, CMD (default RT) the program to run it, N runs.
bench_runtime() {
  local rt=$1 cmd=${2:-$1} st=$TMP/$1-state
  mkdir -p "$st"
  bench "$rt" "$cmd --root $st run --bundle $B $ID" \
    "sh -c '$cmd --root $st delete -f $ID >/dev/null 2>&1 || true'" "${3:-$RUNS}"
  # (hako-runtime keeps a deleted container's emptied directory as `#spare` for the next one)
  [ -z "$(ls -A "$st" | grep -vx '#spare')" ] ||
    echo "warning: $rt left state in $st: its figure may exclude delete" >&2
}
rss_mib() { awk '/^VmRSS:/ { printf "%.1f MiB", $2 / 1024 }' "/proc/$1/status"; }

bench floor "unshare -m -p -n -u -i --fork true"
bench_runtime runc
PODMAN_USED=1
$PODMAN import -q --change 'CMD ["sh"]' "$TARBALL" localhost/busybox:latest >/dev/null
bench podman-runc "$PODMAN --runtime runc run --rm --network none busybox true"

# crun 1.8.1 refuses the hybrid layout while cgroup2 holds a controller (hugetlb here): move
# hugetlb to a v1 hierarchy for the runs below (crun's, and hako's beside them: one hierarchy
# more for hako to place each container in), and give it back at the end. hako's daemon starts
# after the move, so that it knows the hierarchy and removes its cgroups there when it stops.
if ! awk '$3 == "cgroup" && $4 ~ /(^|,)hugetlb(,|$)/ { f=1 } END { exit !f }' /proc/self/mounts; then
  [ -d "$HUGETLB" ] || { mkdir "$HUGETLB"; HUGETLB_MKDIR=1; }
  mount -t cgroup -o hugetlb cgroup "$HUGETLB"
  HUGETLB_MOUNTED=1
fi
if [ "$SKIP_HAKO" != 1 ]; then
  start_hako
  HAKO=$HAKO HAKO_HOST=unix://$TMP/hako.sock "$REPO_ROOT/scripts/images.sh" --only busybox >/dev/null
fi
# hako and its peer in alternating rounds, here and for the runtimes below: a busy moment of
# the machine (this VM's speed drifts by half within minutes) falls on both alike, and each
# median is taken over all of its rounds.
per_round=$(((RUNS + ROUNDS - 1) / ROUNDS))
for ((r = 0; r < ROUNDS; r++)); do
  [ "$SKIP_HAKO" = 1 ] || bench hako "$HAKOC run --rm --network none busybox true" "" "$per_round"
  bench podman-crun "$PODMAN --runtime crun run --rm --network none busybox true" "" "$per_round"
done
if [ "$SKIP_HAKO" != 1 ]; then
  sleep 1   # let it settle: the figure is for an idle daemon that has served the runs
  DAEMON_RSS=$(rss_mib "$HAKO_PID")
  # one retry: hako's starts still fail now and then (counted above for the timed runs)
  MON_CID=$($HAKOC run -d --network none busybox sleep 30 || $HAKOC run -d --network none busybox sleep 30) ||
    die "hako run -d failed"
  for ((i = 0; i < 50; i++)); do
    MON_PID=$(pgrep -n -f "monitor $TMP/root" || true); [ -n "$MON_PID" ] && break; sleep 0.1
  done
  [ -n "$MON_PID" ] || die "no hako monitor process found for $MON_CID"
  MONITOR_RSS=$(rss_mib "$MON_PID")
  $HAKOC rm -f "$MON_CID" >/dev/null && MON_CID=
fi
for ((r = 0; r < ROUNDS; r++)); do
  [ "$SKIP_HAKO" = 1 ] || bench_runtime hako-runtime "$RUNTIME_BIN" "$per_round"
  bench_runtime crun crun "$per_round"
done
[ -n "$YOUKI" ] && bench_runtime youki
podman_release
stop_hako   # its cgroups leave the hugetlb hierarchy with it
hugetlb_release

# ---- report ----
echo
echo "run --rm --network none busybox true: median of $RUNS runs ($(date -u +%FT%TZ), $(nproc) CPUs)"
printf '%-22s %10s %9s\n' name median_ms row/hako
row() {  # row LABEL NAME
  local m=${MED[$2]:-} r=-
  [ -n "$m" ] || { [ "$2" = youki ] || printf '%-22s %10s %9s\n' "$1" - -; return; }
  [ -n "${MED[hako]:-}" ] && r=$(awk -v a="$m" -v b="${MED[hako]}" 'BEGIN { printf "%.2f", a / b }')
  printf '%-22s %10.2f %9s\n' "$1" "$m" "$r"
}
for r in "hako run=hako" "podman run (crun)=podman-crun" "podman run (runc)=podman-runc" \
  "hako runtime run (bundle)=hako-runtime" "crun run (bundle)=crun" "runc run (bundle)=runc" \
  "youki run (bundle)=youki"; do
  row "${r%=*}" "${r#*=}"
done
[ -n "$YOUKI" ] || echo "youki: not on PATH (cargo install youki), skipped"
row "unshare floor" floor
echo "targets: hako run >= 10x faster than podman+crun; hako runtime <= half of crun's time"
if [ -n "${MED[hako]:-}" ]; then
  awk -v a="${MED[podman-crun]}" -v b="${MED[hako]}" \
    'BEGIN { r = a / b; printf "podman-crun/hako: %.2fx (%s)\n", r, (r >= 10 ? "met" : "not met") }'
fi
if [ -n "${MED[hako-runtime]:-}" ]; then
  awk -v a="${MED[crun]}" -v b="${MED[hako-runtime]}" \
    'BEGIN { r = a / b; printf "crun/hako-runtime: %.2fx (%s)\n", r, (r >= 2 ? "met" : "not met") }'
fi
if [ "${FAILED[hako]:-0}" != 0 ]; then
  echo "hako: ${FAILED[hako]} of $RUNS timed runs failed (left out of the median)"
  sed 's/\x1b\[[0-9;]*m//g' "$TMP/hako.log" | grep -E ' (WARN|ERROR) ' | tail -n 5 || true
fi
if [ "$SKIP_HAKO" != 1 ]; then
  echo "hako daemon RSS, idle after the runs: $DAEMON_RSS"
  echo "hako monitor RSS, one running container: $MONITOR_RSS"
fi

#!/usr/bin/env bash
# Benchmark: networking, in one run.
#   1. HTTP through a published port: a busybox httpd serving 1 KiB, driven by wrk over
#      127.0.0.1, on the host itself (no container), in a hako container (-p), and in a podman
#      container (-p, netavark). Requests per second, latency, and ratios to the host.
#   2. The cost of the bridge in `run`: `run --rm busybox true` on the default bridge against
#      `--network none`, for hako and podman (hyperfine medians; the difference is the cost).
# Env: HAKO (binary), DURATION (seconds per wrk run, default 5), ROUNDS (default 3), RUNS
# (hyperfine, default 20), TMPDIR.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HAKO=${HAKO:-$REPO_ROOT/target/release/hako}
DURATION=${DURATION:-5}
RUNS=${RUNS:-20}
die() { echo "net.sh: $*" >&2; exit 1; }

for t in podman wrk hyperfine jq busybox nft conntrack; do
  command -v "$t" >/dev/null || die "$t not found (bash scripts/install-deps.sh)"
done
[ -x "$HAKO" ] || die "hako binary not found at $HAKO (scripts/build.sh, or set HAKO=)"
[ "$(id -u)" = 0 ] || die "run as root"

TMP=$(mktemp -d "${TMPDIR:-/var/tmp}/hako-net.XXXXXX")
((${#TMP} + 11 <= 50)) || { rmdir "$TMP"; die "TMPDIR too long for podman's runroot: use a shorter one"; }
HAKO_PID='' HOST_PID='' PODMAN_USED=0
BRIDGE=hkbench$$
BRIDGE=${BRIDGE:0:15}
PRE_LINKS=$(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | sort)
PRE_NFT=$(nft list tables 2>/dev/null | sort)
PRE_CNI=0; [ -e /var/lib/cni ] && PRE_CNI=1   # podman's CNI plugins keep leases there

cleanup() {
  set +e
  [ -n "$HOST_PID" ] && kill "$HOST_PID" 2>/dev/null && wait "$HOST_PID" 2>/dev/null
  if [ -n "$HAKO_PID" ]; then
    $HAKOC rm -f hweb >/dev/null 2>&1
    kill -TERM "$HAKO_PID" 2>/dev/null; wait "$HAKO_PID" 2>/dev/null
  fi
  if [ "$PODMAN_USED" = 1 ]; then
    podman_teardown
    # netavark's bridge and tables, when this run made them
    ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | sort | comm -13 <(echo "$PRE_LINKS") - |
      grep -E '^(cni-)?podman[0-9]+$' | while read -r l; do ip link del "$l"; done
    nft list tables 2>/dev/null | sort | comm -13 <(echo "$PRE_NFT") - | grep -E 'netavark|nat|filter' |
      while read -r _ fam name; do nft delete table "$fam" "$name"; done
    [ "$PRE_CNI" = 1 ] || rm -rf /var/lib/cni
  fi
  umount_under "$TMP"
  rm -rf --one-file-system "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

podman_private

TARBALL=$("$REPO_ROOT/scripts/images.sh" --only busybox --no-import)
mkdir -p "$TMP/www"
head -c 1024 /dev/zero | tr '\0' 'x' > "$TMP/www/index.html"
SERVE='mkdir -p /www && head -c 1024 /dev/zero | tr "\0" x > /www/index.html && exec httpd -f -p 80 -h /www'
free_port() {  # a port nothing listens on, from below the ephemeral range
  local p; while :; do p=$((20000 + RANDOM % 10000)); ss -Htln "sport = :$p" | grep -q . || { echo "$p"; return; }; done
}
wait_http() { for _ in $(seq 100); do wrk -t1 -c1 -d1s "$1" >/dev/null 2>&1 && curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done; die "$1 never answered"; }

declare -A RPS LAT URL
ROUNDS=${ROUNDS:-3}
# measure_vs NAME: wrk against the host's server and NAME's in turns, ROUNDS times, keeping
# the median of each (the machine's noise then hits both alike). hako and podman are measured
# in phases of their own, each against the host: each one's firewall rules stay out of the
# other's way, as on a machine that runs one of them.
measure_vs() {
  local w r out n=$1
  declare -A runs
  for w in host "$n"; do wait_http "${URL[$w]}"; done
  for ((r = 0; r < ROUNDS; r++)); do
    for w in host "$n"; do
      out=$(wrk -t2 -c32 -d"${DURATION}s" --latency "${URL[$w]}")
      runs[$w]+="$(awk '/Requests\/sec/ {print $2}' <<<"$out") $(awk '$1 == "50%" {print $2}' <<<"$out")"$'\n'
      echo "   round $((r + 1)) $w: $(awk '/Requests\/sec/ {print $2}' <<<"$out") req/s"
    done
  done
  for w in host "$n"; do
    local mid; mid=$(sort -n <<<"${runs[$w]}" | grep . | awk -v k="$ROUNDS" 'NR == int((k + 1) / 2)')
    RPS[$w-$n]=${mid% *}; LAT[$w-$n]=${mid#* }
  done
}

HP=$(free_port)
busybox httpd -f -p "127.0.0.1:$HP" -h "$TMP/www" &
HOST_PID=$!
URL[host]="http://127.0.0.1:$HP/"

# ---- hako ----
# The bridge's cost in `run`, twice: runs back to back (each run then also meets the kernel
# still tearing down the previous one's network namespace), and runs apart (0.2 s between,
# as a person or a deploy starts a container). Measured before each HTTP phase, whose
# ~50,000 connections stay in the conntrack table as TIME_WAIT for two minutes: the kernel
# walks that whole table each time a veth goes down (masquerade's device notifier), which
# then adds ~3 ms to every run's teardown here (a ~14,000-entry table), for any engine.
bridge_cost() {  # NAME CMD
  echo "== bridge cost in run ($1)"
  hyperfine -N --style basic --warmup 3 --runs "$RUNS" --export-json "$TMP/$1-run.json" \
    "$2 run --rm --network none busybox true" "$2 run --rm busybox true" >/dev/null
  hyperfine -N --style basic --warmup 1 --runs "$RUNS" --prepare "sleep 0.2" --export-json "$TMP/$1-apart.json" \
    "$2 run --rm --network none busybox true" "$2 run --rm busybox true" >/dev/null
}
start_hako --bridge "$BRIDGE"
HAKO=$HAKO HAKO_HOST=unix://$TMP/hako.sock "$REPO_ROOT/scripts/images.sh" --only busybox >/dev/null
bridge_cost hako "$HAKOC"
KP=$(free_port)
$HAKOC run -d --name hweb -p "$KP:80" busybox sh -c "$SERVE" >/dev/null
URL[hako]="http://127.0.0.1:$KP/"
echo "== host and hako: wrk -t2 -c32 -d${DURATION}s, $ROUNDS rounds"
measure_vs hako
$HAKOC rm -f hweb >/dev/null
kill -TERM "$HAKO_PID"; wait "$HAKO_PID" 2>/dev/null || true; HAKO_PID=
# This phase's connections leave the conntrack table, so podman's runs meet the same table.
for p in "$HP" "$KP"; do conntrack -D -p tcp --orig-dst 127.0.0.1 --dport "$p" >/dev/null 2>&1 || true; done

# ---- podman ----
PODMAN_USED=1
$PODMAN import -q --change 'CMD ["sh"]' "$TARBALL" localhost/busybox:latest >/dev/null
bridge_cost podman "$PODMAN"
PP=$(free_port)
$PODMAN run -d --name pweb -p "$PP:80" busybox sh -c "$SERVE" >/dev/null
URL[podman]="http://127.0.0.1:$PP/"
echo "== host and podman: wrk -t2 -c32 -d${DURATION}s, $ROUNDS rounds"
measure_vs podman
$PODMAN rm -f -t 0 pweb >/dev/null
kill "$HOST_PID"; wait "$HOST_PID" 2>/dev/null || true; HOST_PID=

calc() { awk "BEGIN { print $1 }"; }
median() { jq ".results[$2].median * 1000" "$1"; }
echo
echo "== results"
printf '%-16s %12s %10s %10s\n' who req/s p50 vs-host
for n in hako podman; do
  for w in host "$n"; do
    printf '%-16s %12s %10s %9.1f%%\n' "$w (vs $n)" "${RPS[$w-$n]}" "${LAT[$w-$n]}" \
      "$(calc "${RPS[$w-$n]} / ${RPS[host-$n]} * 100")"
  done
done
printf 'hako / podman throughput, each against the host: %.2fx\n' \
  "$(calc "(${RPS[hako-hako]} / ${RPS[host-hako]}) / (${RPS[podman-podman]} / ${RPS[host-podman]})")"
for w in hako podman; do
  for how in run apart; do
    none=$(median "$TMP/$w-$how.json" 0) bridge=$(median "$TMP/$w-$how.json" 1)
    printf '%-7s run --rm true (%-5s): none %.1f ms, bridge %.1f ms, bridge adds %.1f ms\n' "$w" \
      "$([ "$how" = run ] && echo "back to back" || echo "apart")" "$none" "$bridge" "$(calc "$bridge - $none")"
  done
done

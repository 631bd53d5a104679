#!/usr/bin/env bash
# Benchmark: the registry and the pull client, over loopback, in one run.
#   1. skopeo push and pull of an image with one 500 MB layer, and of one with 200 small
#      layers: hako's registry (`hako registry serve`) against the reference registry
#      (Debian's docker-registry, CNCF distribution 2.8), the same client for both.
#   2. from hako's registry: `hako pull` (download + unpack) against `podman pull`
#      (download + unpack) and `skopeo copy` to an OCI directory (download only).
#   3. skopeo alone on the 500 MB image (OCI directory to OCI directory, no registry): the
#      client's own ceiling, which bounds the ratio any registry can show against dist.
# Every server and daemon runs on its own temporary root, listens on 127.0.0.1 only, and is
# stopped by PID. Env: HAKO (binary), BENCH_DIR (inputs, reused), RUNS (default 3).
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HAKO=${HAKO:-$REPO_ROOT/target/release/hako}
BENCH_DIR=${BENCH_DIR:-/var/tmp/hako-bench-registry}
RUNS=${RUNS:-3}
BIG_MB=500
SMALL_LAYERS=200
SMALL_KB=64

die() { echo "registry.sh: $*" >&2; exit 1; }
for t in skopeo podman docker-registry python3 curl; do
  command -v "$t" >/dev/null || die "$t not found (scripts/install-deps.sh)"
done
[ -x "$HAKO" ] || die "hako binary not found at $HAKO (scripts/build.sh, or set HAKO=)"
[ "$(id -u)" = 0 ] || die "run as root (podman overlay storage, hako daemon)"

WORK=$(mktemp -d /var/tmp/hako-bench-registry-run.XXXXXX)
# podman refuses a runroot longer than 50 characters: its dirs go under a short path.
PODTMP=$(mktemp -d /tmp/hbp.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  # podman's overlay storage may hold mounts under WORK: unmount before removing.
  for dir in "$WORK" "$PODTMP"; do
    { grep -o " $dir[^ ]*" /proc/self/mountinfo || true; } | sort -r | while read -r m; do umount -l "$m" || true; done
    rm -rf "$dir" || true
  done
}
trap cleanup EXIT

# ---- inputs: OCI layouts, generated once ----
gen_layout() { # gen_layout DIR LAYER_FILES...
  python3 - "$@" <<'PY'
import hashlib, json, os, sys, gzip, shutil
d, layers = sys.argv[1], sys.argv[2:]
os.makedirs(f"{d}/blobs/sha256", exist_ok=True)
def put_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""): h.update(b)
    dst = f"{d}/blobs/sha256/{h.hexdigest()}"
    if not os.path.exists(dst): os.link(path, dst)
    return "sha256:" + h.hexdigest(), os.path.getsize(path)
def put(b):
    h = hashlib.sha256(b).hexdigest(); open(f"{d}/blobs/sha256/{h}", "wb").write(b); return "sha256:" + h, len(b)
descs, diffs = [], []
for l in layers:
    dg, sz = put_file(l)
    h = hashlib.sha256()
    with gzip.open(l, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""): h.update(b)
    diffs.append("sha256:" + h.hexdigest())
    descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": dg, "size": sz})
cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {}, "rootfs": {"type": "layers", "diff_ids": diffs}}).encode()
cd, cs = put(cfg)
m = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
  "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs}, "layers": descs}).encode()
md, ms = put(m)
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
  "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}, open(f"{d}/index.json", "w"))
open(f"{d}/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
print(sum(x["size"] for x in descs) + cs)
PY
}

if [ ! -f "$BENCH_DIR/.complete" ]; then
  echo "generating inputs in $BENCH_DIR ..."
  rm -rf "$BENCH_DIR/big" "$BENCH_DIR/small" "$BENCH_DIR/src"
  mkdir -p "$BENCH_DIR/src/big" "$BENCH_DIR/src/small"
  for i in 1 2 3 4 5; do head -c $((BIG_MB / 5))M /dev/urandom > "$BENCH_DIR/src/big/blob$i"; done
  tar -C "$BENCH_DIR/src/big" -cf - . | gzip -1 > "$BENCH_DIR/src/big.tar.gz"
  rm -rf "$BENCH_DIR/src/big"
  gen_layout "$BENCH_DIR/big" "$BENCH_DIR/src/big.tar.gz" > "$BENCH_DIR/big.bytes"
  files=()
  for i in $(seq 1 $SMALL_LAYERS); do
    mkdir -p "$BENCH_DIR/src/small/$i"
    head -c ${SMALL_KB}K /dev/urandom > "$BENCH_DIR/src/small/$i/file$i"
    tar -C "$BENCH_DIR/src/small/$i" -cf - . | gzip -1 > "$BENCH_DIR/src/small/$i.tar.gz"
    files+=("$BENCH_DIR/src/small/$i.tar.gz")
  done
  gen_layout "$BENCH_DIR/small" "${files[@]}" > "$BENCH_DIR/small.bytes"
  touch "$BENCH_DIR/.complete"
fi
BIG_BYTES=$(cat "$BENCH_DIR/big.bytes")
SMALL_BYTES=$(cat "$BENCH_DIR/small.bytes")

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 500); do curl -s -o /dev/null "http://127.0.0.1:$1/v2/" && return 0; sleep 0.02; done; die "nothing answers on port $1"; }

REG_PID=
start_hako_registry() { # sets PORT
  PORT=$(free_port); local root=$WORK/hreg-$PORT
  "$HAKO" registry serve --addr "127.0.0.1:$PORT" --root "$root" >"$WORK/hreg-$PORT.log" 2>&1 &
  REG_PID=$!; PIDS+=("$REG_PID"); wait_port "$PORT"
}
start_distribution() { # sets PORT
  PORT=$(free_port); local root=$WORK/dreg-$PORT
  mkdir -p "$root"
  cat > "$root.yml" <<YML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $root
http:
  addr: 127.0.0.1:$PORT
YML
  docker-registry serve "$root.yml" >"$root.log" 2>&1 &
  REG_PID=$!; PIDS+=("$REG_PID"); wait_port "$PORT"
}
stop_registry() { kill "$REG_PID"; wait "$REG_PID" 2>/dev/null || true; rm -rf "$WORK"/hreg-* "$WORK"/dreg-*; }

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mbps() { python3 -c "v=$1/$2/1e6; print(f'{v:.0f}' if v >= 100 else f'{v:.1f}')"; }
ratio() { python3 -c "print(f'{$1/$2:.2f}' if $2 > 0 else '-')"; }

SKOPEO="skopeo --insecure-policy"
# skopeo's blob cache would turn repeated pushes into cross-repo mounts: keep it per run.
export XDG_CACHE_HOME=$WORK/cache

# The registry process's CPU seconds so far (user + system): where the client is the limit,
# wall time cannot tell the servers apart, their CPU per byte can.
server_cpu() { awk -v t="$(getconf CLK_TCK)" '{ print ($14 + $15) / t }' "/proc/$REG_PID/stat"; }

# measure_push IMAGE(big|small) KIND(hako|dist): "seconds cpu", medians over fresh registries
measure_push() {
  local img=$1 kind=$2 times=() cpus=()
  for r in $(seq 1 "$RUNS"); do
    if [ "$kind" = hako ]; then start_hako_registry; else start_distribution; fi
    rm -rf "$WORK/cache"
    local t0 c0; t0=$(now); c0=$(server_cpu)
    $SKOPEO copy -q --dest-tls-verify=false "oci:$BENCH_DIR/$img:latest" "docker://127.0.0.1:$PORT/bench/$img:latest"
    times+=("$(python3 -c "print($(now)-$t0)")")
    cpus+=("$(python3 -c "print($(server_cpu)-$c0)")")
    stop_registry
  done
  echo "$(printf '%s\n' "${times[@]}" | median) $(printf '%s\n' "${cpus[@]}" | median)"
}

# measure_pull IMAGE KIND: "seconds cpu" of skopeo pulling into a fresh OCI dir (medians)
measure_pull() {
  local img=$1 kind=$2 times=() cpus=()
  if [ "$kind" = hako ]; then start_hako_registry; else start_distribution; fi
  $SKOPEO copy -q --dest-tls-verify=false "oci:$BENCH_DIR/$img:latest" "docker://127.0.0.1:$PORT/bench/$img:latest"
  for r in $(seq 1 "$RUNS"); do
    rm -rf "$WORK/out" "$WORK/cache"
    local t0 c0; t0=$(now); c0=$(server_cpu)
    $SKOPEO copy -q --src-tls-verify=false "docker://127.0.0.1:$PORT/bench/$img:latest" "oci:$WORK/out:x"
    times+=("$(python3 -c "print($(now)-$t0)")")
    cpus+=("$(python3 -c "print($(server_cpu)-$c0)")")
  done
  rm -rf "$WORK/out"
  stop_registry
  echo "$(printf '%s\n' "${times[@]}" | median) $(printf '%s\n' "${cpus[@]}" | median)"
}

# measure_local IMAGE: seconds of skopeo copying IMAGE between two OCI dirs (median)
measure_local() {
  local img=$1 times=()
  for r in $(seq 1 "$RUNS"); do
    rm -rf "$WORK/out" "$WORK/cache"
    local t0; t0=$(now)
    $SKOPEO copy -q "oci:$BENCH_DIR/$img:latest" "oci:$WORK/out:x"
    times+=("$(python3 -c "print($(now)-$t0)")")
  done
  rm -rf "$WORK/out"
  printf '%s\n' "${times[@]}" | median
}

echo "== registry: skopeo push/pull, hako registry vs distribution 2.8 (median of $RUNS) =="
echo "   (server CPU: the registry process's user + system seconds for the transfer)"
printf '%-28s %10s %10s %7s %13s %13s %7s\n' "" "hako MB/s" "dist MB/s" "ratio" "hako cpu s" "dist cpu s" "ratio"
row() {  # LABEL BYTES "HAKO_S HAKO_CPU" "DIST_S DIST_CPU"
  local ht hc dt dc; read -r ht hc <<<"$3"; read -r dt dc <<<"$4"
  printf '%-28s %10s %10s %7s %13.2f %13.2f %7s\n' "$1" "$(mbps "$2" "$ht")" "$(mbps "$2" "$dt")" \
    "$(ratio "$dt" "$ht")" "$hc" "$dc" "$(ratio "$dc" "$hc")"
}
declare -A DIST_S   # push|pull -> dist's seconds on the big image
for img in big small; do
  bytes=$BIG_BYTES; [ $img = small ] && bytes=$SMALL_BYTES
  label="500 MB layer"; [ $img = small ] && label="$SMALL_LAYERS small layers"
  for op in push pull; do
    h=$(measure_$op $img hako); d=$(measure_$op $img dist); row "$op, $label" "$bytes" "$h" "$d"
    [ $img = small ] || DIST_S[$op]=${d% *}
  done
done
CEIL=$(measure_local big)

# The client's own limit on the big image: the same skopeo copying it from one OCI directory
# to another, with no registry and no network in the path, to the same disk. Its time is
# the hashing and copying skopeo does for any destination; no registry can move the image
# through skopeo faster, so dist's time over this one is the highest ratio any registry
# could reach against dist with this client. (The small image's time is per-blob latency on
# both ends, which an OCI directory does not stand for.)
echo
echo "== the client alone, 500 MB layer: skopeo copy oci dir -> oci dir, no registry (median of $RUNS) =="
printf '%-28s %10s %20s %20s\n' "" "MB/s" "ceiling/dist, push" "ceiling/dist, pull"
printf '%-28s %10s %20s %20s\n' "skopeo alone" "$(mbps "$BIG_BYTES" "$CEIL")" \
  "$(ratio "${DIST_S[push]}" "$CEIL")" "$(ratio "${DIST_S[pull]}" "$CEIL")"

echo
echo "== clients pulling the 500 MB image from hako's registry (median of $RUNS) =="
start_hako_registry
$SKOPEO copy -q --dest-tls-verify=false "oci:$BENCH_DIR/big:latest" "docker://127.0.0.1:$PORT/bench/big:latest"
IMG=127.0.0.1:$PORT/bench/big:latest

hako_times=()
for r in $(seq 1 "$RUNS"); do
  d=$WORK/hakod-$r; mkdir -p "$d"
  "$HAKO" daemon --root "$d/root" -H "unix://$d/h.sock" 2>"$d/log" & DPID=$!; PIDS+=("$DPID")
  for _ in $(seq 1 500); do HAKO_HOST=unix://$d/h.sock "$HAKO" version >/dev/null 2>&1 && break; sleep 0.02; done
  t0=$(now)
  HAKO_HOST=unix://$d/h.sock "$HAKO" pull -q "$IMG" >/dev/null
  hako_times+=("$(python3 -c "print($(now)-$t0)")")
  kill "$DPID"; wait "$DPID" 2>/dev/null || true; rm -rf "$d"
done
ht=$(printf '%s\n' "${hako_times[@]}" | median)

podman_times=()
for r in $(seq 1 "$RUNS"); do
  p=$PODTMP/$r; mkdir -p "$p/tmp"
  printf '[storage]\ndriver = "overlay"\ngraphroot = "%s/root"\nrunroot = "%s/run"\n' "$p" "$p" > "$p/storage.conf"
  t0=$(now)
  CONTAINERS_STORAGE_CONF=$p/storage.conf TMPDIR=$p/tmp podman --root "$p/root" --runroot "$p/run" pull -q --tls-verify=false "$IMG" >/dev/null
  podman_times+=("$(python3 -c "print($(now)-$t0)")")
  CONTAINERS_STORAGE_CONF=$p/storage.conf podman --root "$p/root" --runroot "$p/run" system reset -f >/dev/null 2>&1 || true
  rm -rf "$p"
done
pt=$(printf '%s\n' "${podman_times[@]}" | median)

sk_times=()
for r in $(seq 1 "$RUNS"); do
  rm -rf "$WORK/out" "$WORK/cache"
  t0=$(now)
  $SKOPEO copy -q --src-tls-verify=false "docker://$IMG" "oci:$WORK/out:x"
  sk_times+=("$(python3 -c "print($(now)-$t0)")")
done
rm -rf "$WORK/out"
st=$(printf '%s\n' "${sk_times[@]}" | median)
stop_registry

printf '%-36s %8s %10s\n' "" "seconds" "MB/s"
printf '%-36s %8.2f %10s\n' "hako pull (download + unpack)" "$ht" "$(mbps "$BIG_BYTES" "$ht")"
printf '%-36s %8.2f %10s\n' "podman pull (download + unpack)" "$pt" "$(mbps "$BIG_BYTES" "$pt")"
printf '%-36s %8.2f %10s\n' "skopeo copy to oci dir (download)" "$st" "$(mbps "$BIG_BYTES" "$st")"
echo "hako pull vs podman pull: $(ratio "$pt" "$ht")x"

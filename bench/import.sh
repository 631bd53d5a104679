#!/usr/bin/env bash
# Benchmark: import + unpack of one 500 MiB random-content layer.
#   hako import layer.tar.gz   vs   podman load (docker-archive)   vs   umoci unpack (OCI layout)
#   and GNU tar -xzf as the floor.
# Env: HAKO (binary), BENCH_DIR (inputs, reused), RUNS (default 3), SKIP_HAKO=1, TMPDIR.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HAKO=${HAKO:-$REPO_ROOT/target/release/hako}
BENCH_DIR=${BENCH_DIR:-/var/tmp/hako-bench-import}
RUNS=${RUNS:-3}
SKIP_HAKO=${SKIP_HAKO:-0}
PAYLOAD_MIB=500                     # 5 x 100 MiB of /dev/urandom: incompressible on purpose

die() { echo "import.sh: $*" >&2; exit 1; }

# ---- prerequisites ----
for t in podman umoci tar gzip sha256sum; do
  command -v "$t" >/dev/null || die "$t not found (apt-get install -y podman umoci)"
done
if [ "$SKIP_HAKO" != 1 ]; then
  [ -x "$HAKO" ] || die "hako binary not found at $HAKO (scripts/build.sh, or set HAKO=, or SKIP_HAKO=1)"
fi
HYPERFINE=$(command -v hyperfine || true)
[ -n "$HYPERFINE" ] || echo "note: hyperfine not found, using a plain date loop (apt-get install -y hyperfine)"
[ "$(id -u)" = 0 ] || die "run as root (podman overlay storage and umoci unpack need it)"
if command -v pigz >/dev/null; then GZ="pigz -1"; else GZ="gzip -1"; fi

# ---- inputs (generated once, reused while $BENCH_DIR/.complete exists) ----
generate() {
  local d=$BENCH_DIR
  echo "generating inputs in $d ..."
  mkdir -p "$d"
  # only remove what we create: BENCH_DIR may be user-supplied
  rm -rf "$d/rootfs" "$d/layer.tar" "$d/layer.tar.gz" "$d/image-docker.tar" "$d/oci" "$d/docker-stage" "$d/.complete"
  mkdir -p "$d/rootfs/data" "$d/rootfs/etc" "$d/rootfs/usr/share/doc/bench" "$d/rootfs/var/empty"
  for i in 1 2 3 4 5; do head -c 100M /dev/urandom > "$d/rootfs/data/blob$i"; done
  # a small tree with the entry types an unpacker must get right (no /bin/sh: nothing runs)
  echo bench > "$d/rootfs/etc/hostname"
  printf 'root:x:0:0:root:/root:/nonexistent\n' > "$d/rootfs/etc/passwd"
  echo "import benchmark layer" > "$d/rootfs/usr/share/doc/bench/README"
  ln -s ../usr/share/doc/bench/README "$d/rootfs/etc/readme-link"
  ln "$d/rootfs/etc/hostname" "$d/rootfs/etc/hostname.hardlink"
  echo secret > "$d/rootfs/etc/shadow"; chmod 0600 "$d/rootfs/etc/shadow"
  chown 1000:1000 "$d/rootfs/var/empty"

  tar --numeric-owner -C "$d/rootfs" -cf "$d/layer.tar" .
  $GZ -c "$d/layer.tar" > "$d/layer.tar.gz"
  local diffid gzdigest gzsize
  diffid=$(sha256sum "$d/layer.tar" | cut -d' ' -f1)
  gzdigest=$(sha256sum "$d/layer.tar.gz" | cut -d' ' -f1)
  gzsize=$(stat -c %s "$d/layer.tar.gz")

  # image config; valid both as docker and OCI config. diff_ids = digest of the *uncompressed* tar.
  local cfg='{"architecture":"amd64","os":"linux","created":"2024-01-01T00:00:00Z",'
  cfg+='"config":{"Env":["PATH=/usr/bin:/bin"],"WorkingDir":"/"},'
  cfg+='"rootfs":{"type":"layers","diff_ids":["sha256:'$diffid'"]},'
  cfg+='"history":[{"created":"2024-01-01T00:00:00Z","created_by":"bench/import.sh"}]}'
  local cfghex cfgsize
  cfghex=$(printf '%s' "$cfg" | sha256sum | cut -d' ' -f1)
  cfgsize=$(printf '%s' "$cfg" | wc -c)

  # docker-archive, laid out like (legacy) `docker save`: uncompressed layer.tar per layer dir
  local st=$d/docker-stage
  mkdir -p "$st/$diffid"
  ln "$d/layer.tar" "$st/$diffid/layer.tar"          # hardlink: no extra 500 MiB copy
  printf '%s' "$cfg" > "$st/$cfghex.json"
  printf '[{"Config":"%s.json","RepoTags":["bench/import:latest"],"Layers":["%s/layer.tar"]}]' \
    "$cfghex" "$diffid" > "$st/manifest.json"
  printf '{"bench/import":{"latest":"%s"}}' "$diffid" > "$st/repositories"
  tar --numeric-owner -C "$st" -cf "$d/image-docker.tar" manifest.json repositories "$cfghex.json" "$diffid"
  rm -rf "$st"

  # OCI image layout for umoci, gzip layer, ref name "bench"
  local o=$d/oci
  mkdir -p "$o/blobs/sha256"
  printf '{"imageLayoutVersion":"1.0.0"}' > "$o/oci-layout"
  ln "$d/layer.tar.gz" "$o/blobs/sha256/$gzdigest"
  printf '%s' "$cfg" > "$o/blobs/sha256/$cfghex"
  local man
  man='{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'
  man+='"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:'$cfghex'","size":'$cfgsize'},'
  man+='"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:'$gzdigest'","size":'$gzsize'}]}'
  local manhex; manhex=$(printf '%s' "$man" | sha256sum | cut -d' ' -f1)
  printf '%s' "$man" > "$o/blobs/sha256/$manhex"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"bench"}}]}' \
    "$manhex" "$(printf '%s' "$man" | wc -c)" > "$o/index.json"

  echo "$GZ" > "$d/.complete"                       # records the gzip level the inputs were made with
}
[ -f "$BENCH_DIR/.complete" ] || generate
echo "inputs: $BENCH_DIR (layer.tar.gz made with: $(cat "$BENCH_DIR/.complete"))"

# ---- scratch area, daemon, cleanup ----
TMP=$(mktemp -d "${TMPDIR:-/var/tmp}/hako-bench-import.XXXXXX")
HAKO_PID=
PODMAN_USED=0

cleanup() {
  set +e
  if [ -n "$HAKO_PID" ]; then kill -TERM "$HAKO_PID" 2>/dev/null; wait "$HAKO_PID" 2>/dev/null; fi
  [ "$PODMAN_USED" = 1 ] && podman_teardown
  umount_under "$TMP"
  if awk -v p="$TMP/" 'index($5, p) == 1 { f=1 } END { exit !f }' /proc/self/mountinfo; then
    echo "warning: mounts left under $TMP, not removing it" >&2
  else
    rm -rf --one-file-system "$TMP"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

podman_private

# ---- timing ----
declare -A MED
# bench NAME PREPARE CMD: one uncounted warm-up, then RUNS timed runs; PREPARE (untimed) before each.
# PREPARE ends with sync so no run pays for the previous run's dirty pages.
bench() {
  local name=$1 prep="$2; sync" cmd=$3
  echo "== $name: $cmd"
  if [ -n "$HYPERFINE" ]; then
    "$HYPERFINE" --shell=bash --style basic --warmup 1 --runs "$RUNS" \
      --prepare "$prep" --export-json "$TMP/$name.json" "$cmd"
    MED[$name]=$(grep -o '"median": *[0-9.e+-]*' "$TMP/$name.json" | head -1 | sed 's/.*: *//')
  else
    local i t0 t1 times=()
    for ((i = 0; i <= RUNS; i++)); do
      bash -c "$prep"
      t0=$(date +%s.%N); bash -c "$cmd" >/dev/null; t1=$(date +%s.%N)
      if ((i > 0)); then times+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", b - a }')"); echo "  run $i: ${times[-1]} s"; fi
    done
    MED[$name]=$(printf '%s\n' "${times[@]}" | sort -g |
      awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }')
  fi
}

if [ "$SKIP_HAKO" != 1 ]; then
  start_hako
  bench hako "$HAKOC rmi -f bench/import:latest >/dev/null 2>&1 || true; $HAKOC system prune -a -f >/dev/null" \
    "$HAKOC import $BENCH_DIR/layer.tar.gz bench/import:latest"
fi

PODMAN_USED=1
bench podman "$PODMAN rmi -a -f >/dev/null 2>&1 || true" "$PODMAN load -q -i $BENCH_DIR/image-docker.tar"
bench umoci "rm -rf $TMP/bundle" "umoci unpack --image $BENCH_DIR/oci:bench $TMP/bundle"
bench tar "rm -rf $TMP/tarx && mkdir $TMP/tarx" "tar -xzf $BENCH_DIR/layer.tar.gz -C $TMP/tarx"

# ---- report ----
echo
echo "import + unpack of one ${PAYLOAD_MIB} MiB random layer (${RUNS} runs, median; gzip: $(cat "$BENCH_DIR/.complete"))"
printf '%-8s %10s %10s\n' tool median_s MiB/s
for t in hako podman umoci tar; do
  [ -n "${MED[$t]:-}" ] || continue
  printf '%-8s %10.3f %10.1f\n' "$t" "${MED[$t]}" "$(awk -v a="$PAYLOAD_MIB" -v b="${MED[$t]}" 'BEGIN { print a / b }')"
done
if [ -n "${MED[hako]:-}" ]; then
  for t in podman umoci tar; do
    printf '%s/hako: %.2fx\n' "$t" "$(awk -v a="${MED[$t]}" -v b="${MED[hako]}" 'BEGIN { print a / b }')"
  done
fi
echo "target: hako >= 2x faster than podman load"

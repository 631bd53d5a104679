#!/usr/bin/env bash
# Benchmark: building the same Dockerfile (FROM debian, a RUN that writes files, COPY of a
# 50 MB file and of a 2,000-file source tree, ENV, CMD) with `hako build` and `buildah bud`
# (and `podman build`), in one run:
#   cold     no cache (--no-cache)
#   warm     everything cached
#   changed  one source file changed (the steps from the COPY that reads it rerun)
# Prints medians and the ratios. Env: HAKO (binary), RUNS (default 5), TMPDIR.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HAKO=${HAKO:-$REPO_ROOT/target/release/hako}
RUNS=${RUNS:-5}
die() { echo "build.sh: $*" >&2; exit 1; }
for t in buildah podman hyperfine jq; do
  command -v "$t" >/dev/null || die "$t not found (bash scripts/install-deps.sh)"
done
[ -x "$HAKO" ] || die "hako binary not found at $HAKO (scripts/build.sh, or set HAKO=)"
[ "$(id -u)" = 0 ] || die "run as root"

TMP=$(mktemp -d "${TMPDIR:-/var/tmp}/hako-bb.XXXXXX")
((${#TMP} + 11 <= 50)) || { rmdir "$TMP"; die "TMPDIR too long for podman's runroot: use a shorter one"; }
HAKO_PID='' PEERS_USED=0
cleanup() {
  set +e
  if [ -n "$HAKO_PID" ]; then kill -TERM "$HAKO_PID" 2>/dev/null; wait "$HAKO_PID" 2>/dev/null; fi
  if [ "$PEERS_USED" = 1 ]; then
    buildah $STORE rm --all >/dev/null 2>&1
    podman_teardown
  fi
  umount_under "$TMP"
  rm -rf --one-file-system "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

podman_private

# ---- the input ----
TARBALL=$("$REPO_ROOT/scripts/images.sh" --only debian --no-import)
CTX=$TMP/ctx
mkdir -p "$CTX/src"
head -c $((50 << 20)) /dev/urandom > "$CTX/big.bin"
for d in $(seq 1 20); do
  mkdir -p "$CTX/src/d$d"
  for f in $(seq 1 100); do echo "source $d/$f" > "$CTX/src/d$d/f$f.txt"; done
done
cat > "$CTX/Dockerfile" <<'EOF'
FROM debian:bookworm
RUN mkdir -p /opt/gen && for i in $(seq 1 200); do echo "generated $i" > /opt/gen/f$i; done
COPY big.bin /opt/big.bin
COPY src /opt/src
ENV APP_HOME=/opt
CMD ["ls", "/opt"]
EOF

# ---- hako ----
start_hako --bridge "hkbb$$"
$HAKOC import "$TARBALL" debian:bookworm >/dev/null

PEERS_USED=1
$PODMAN import -q "$TARBALL" localhost/debian:bookworm >/dev/null
# buildah reads FROM debian:bookworm as docker.io/... unless told: tag it so.
$PODMAN tag localhost/debian:bookworm docker.io/library/debian:bookworm

declare -A MED
time_it() {  # NAME RUNS PREPARE CMD
  local name=$1 runs=$2 prep=$3 cmd=$4
  echo "== $name: $cmd"
  hyperfine -N --style basic --warmup 1 --runs "$runs" --prepare "$prep" --export-json "$TMP/$name.json" "$cmd" >/dev/null
  MED[$name]=$(jq '.results[0].median * 1000' "$TMP/$name.json")
  printf '   median %.0f ms\n' "${MED[$name]}"
}
# Each timed run starts with the disk written back: the cold builds leave hundreds of MB of
# dirty pages whose writeback would otherwise land in whichever runs come next.
touch_one='sh -c "date +%s%N > '"$CTX"'/src/d7/f7.txt; sync"'
time_it hako-cold "$RUNS" sync "$HAKOC build -q --no-cache -t bb $CTX"
# The peers' RUN steps get no network (the step needs none, and their CNI bridge and iptables
# rules would outlive the run); hako's RUN goes on its default bridge.
time_it buildah-cold "$RUNS" sync "buildah $STORE bud --network none --layers --no-cache -q -t bb $CTX"
time_it podman-cold "$RUNS" sync "$PODMAN build --network none --layers --no-cache -q -t bb $CTX"
time_it hako-warm $((RUNS * 2)) sync "$HAKOC build -q -t bb $CTX"
time_it buildah-warm $((RUNS * 2)) sync "buildah $STORE bud --network none --layers -q -t bb $CTX"
time_it hako-changed "$RUNS" "$touch_one" "$HAKOC build -q -t bb $CTX"
time_it buildah-changed "$RUNS" "$touch_one" "buildah $STORE bud --network none --layers -q -t bb $CTX"

echo
echo "== results (medians)"
printf '%-9s %10s %10s %10s %8s\n' case hako buildah podman ratio
for c in cold warm changed; do
  p=${MED[podman-$c]:-}
  printf '%-9s %8.0f ms %8.0f ms %10s %7.1fx\n' "$c" "${MED[hako-$c]}" "${MED[buildah-$c]}" \
    "${p:+$(printf '%.0f ms' "$p")}" "$(awk "BEGIN { print ${MED[buildah-$c]} / ${MED[hako-$c]} }")"
done

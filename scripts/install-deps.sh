#!/usr/bin/env bash
# Installs what building, demoing and testing hako needs on a fresh Debian 12 machine (root).
# Idempotent: packages already present are skipped, so a warm machine pays one dpkg query.
set -euo pipefail

# busybox-static and debootstrap make the base images; podman, skopeo and umoci are the
# peers of the interop tests and benchmarks; hyperfine and wrk time the benchmarks; nftables
# (the nft tool) programs the NAT and port-publishing rules of hako's networks; conntrack
# lets bench/net.sh drop its own connections' entries between phases.
pkgs=(busybox-static debootstrap podman buildah skopeo umoci crun runc hyperfine tar gzip ca-certificates docker-registry curl openssl nftables wrk jq conntrack)
# The docker CLI drives hakod in the interop tests; Debian's docker.io ships one.
command -v docker >/dev/null 2>&1 || pkgs+=(docker.io)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}" >&2
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install the Rust toolchain (https://rustup.rs) first" >&2
  exit 1
fi

# scripts/build.sh builds hako-runtime for musl (a start of it costs 0.1 ms there against 0.6
# for glibc's). Without the target it falls back to glibc, so a failure here is only a note.
if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl; then
  rustup target add x86_64-unknown-linux-musl ||
    echo "note: could not add the musl target; scripts/build.sh will link hako-runtime with glibc" >&2
fi

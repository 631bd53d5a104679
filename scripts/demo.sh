#!/usr/bin/env bash
# Sets everything up on a fresh Debian 12 machine (as root) and runs hako's job for real:
# builds hako, makes the busybox and debian base images from Debian packages, starts a
# daemon on its own root and socket, imports the images, and drives it with hako's CLI and
# the docker CLI. The daemon is stopped and its temporary root removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release
HAKO=$PWD/target/release/hako
work=$(mktemp -d /var/tmp/hako-demo.XXXXXX)
export HAKO_HOST="unix://$work/hako.sock"
"$HAKO" daemon --root "$work/root" >"$work/daemon.log" 2>&1 &
daemon=$!
cleanup() { kill -TERM "$daemon" 2>/dev/null && wait "$daemon" || true; rm -rf --one-file-system "$work"; }
trap cleanup EXIT
for _ in $(seq 100); do "$HAKO" version >/dev/null 2>&1 && break; sleep 0.1; done

HAKO="$HAKO" scripts/images.sh
echo "--- hako images"
"$HAKO" images
echo "--- hako history debian:bookworm"
"$HAKO" history debian:bookworm
echo "--- save busybox, remove it, load it back"
"$HAKO" save -o "$work/busybox.tar" busybox
"$HAKO" rmi busybox
"$HAKO" load -i "$work/busybox.tar"
if command -v docker >/dev/null; then
  echo "--- the docker CLI against hakod"
  DOCKER_HOST=$HAKO_HOST docker images
fi
echo "--- a file from the unpacked busybox layer"
lower=$("$HAKO" inspect --format '{{.GraphDriver.Data.LowerDir}}' busybox)
ls -l "$lower/bin/busybox"
"$HAKO" system check

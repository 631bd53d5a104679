#!/usr/bin/env bash
# Sets everything up on a fresh Debian 12 machine (as root) and runs hako's job for real:
# builds hako (scripts/build.sh), makes the busybox and debian base images from Debian packages, starts a
# daemon on its own root and socket, imports the images, runs containers (one serving HTTP on
# a published port, two talking by name on a user network), builds an image from a Dockerfile,
# and drives it with hako's CLI and the docker CLI. The daemon is stopped and its temporary root removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
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
echo "--- containers: one-shot, detached with logs and exec, and through the docker CLI"
"$HAKO" run --rm busybox sh -c 'echo "hello from $(hostname), pid $$ in its own namespaces"'
"$HAKO" run --rm debian:bookworm sh -c 'echo "debian $(cat /etc/debian_version)"'
"$HAKO" run -d --name ticker busybox sh -c 'i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done' >/dev/null
sleep 1
"$HAKO" ps
"$HAKO" logs --tail 2 ticker
"$HAKO" exec ticker sh -c 'echo "exec sees: $(cat /proc/1/cmdline | tr "\0" " ")"'
"$HAKO" rm -f ticker >/dev/null
echo "--- networks: a web server published on the host, and two containers talking by name"
port=$(for p in $(seq 18080 18180); do ss -Htln "sport = :$p" | grep -q . || { echo "$p"; break; }; done)
"$HAKO" run -d --name web -p "$port:80" busybox sh -c \
  'mkdir -p /www && echo "hello from a hako container" > /www/index.html && exec httpd -f -p 80 -h /www' >/dev/null
"$HAKO" port web
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/" && break; sleep 0.1; done
"$HAKO" network create demo-net >/dev/null
"$HAKO" network connect --alias www demo-net web
"$HAKO" run --rm --network demo-net busybox wget -qO- http://www/
"$HAKO" network ls
"$HAKO" rm -f web >/dev/null
"$HAKO" network rm demo-net >/dev/null
if command -v docker >/dev/null; then
  DOCKER_HOST=$HAKO_HOST docker run --rm busybox echo "hello through the docker CLI"
fi
echo "--- hako build: a Dockerfile, then the same build again from the cache"
mkdir -p "$work/app"
echo "built by hako" > "$work/app/message.txt"
printf 'FROM busybox\nCOPY message.txt /srv/\nRUN wc -c /srv/message.txt > /srv/size\nCMD ["cat", "/srv/message.txt", "/srv/size"]\n' \
  > "$work/app/Dockerfile"
"$HAKO" build -t demo-app "$work/app"
"$HAKO" build -t demo-app "$work/app" | grep -c "Using cache" | sed 's/$/ steps from the cache/'
"$HAKO" run --rm demo-app
"$HAKO" system check

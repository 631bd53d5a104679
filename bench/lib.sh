# Shared by the benchmark scripts (sourced): a scratch-scoped podman, hako's daemon, and the
# teardown both need. Callers set TMP (a short directory: podman's runroot must stay under
# 50 characters) and HAKO before using these.

# Unmounts everything under $1, deepest first (mountinfo field 5 = mount point).
umount_under() {
  awk -v p="$1/" 'index($5, p) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
    while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" || true; done
}

# podman and buildah with private storage, engine, lock and network dirs under $TMP, so nothing
# is shared with a system podman; cgroupfs (no systemd here) and the ulimits this machine allows.
# Sets STORE (the storage flags), PODMAN and exports the config paths.
podman_private() {
  cat > "$TMP/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
lock_type = "file"
runtime = "runc"
tmp_dir = "$TMP/podman-tmp"
[network]
network_config_dir = "$TMP/podman-net"
CONF
  cat > "$TMP/storage.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$TMP/podman-root"
runroot = "$TMP/podman-run"
CONF
  export CONTAINERS_CONF=$TMP/containers.conf CONTAINERS_STORAGE_CONF=$TMP/storage.conf
  STORE="--root $TMP/podman-root --runroot $TMP/podman-run --storage-driver overlay"
  PODMAN="podman $STORE"
  # podman (cgroupfs manager) leaves /libpod_parent/conmon in every hierarchy, and its
  # runtimes and network plugins their state dirs in /run: only the ones that did not exist
  # before are removed, so a system podman's stay untouched.
  PRE_LIBPOD=$(ls -d /sys/fs/cgroup/*/libpod_parent /run/crun /run/runc /run/netns 2>/dev/null || true)
}

# Ends the scratch podman: its containers first (their cgroups pin the hierarchies), then
# its storage (system reset also unmounts the overlay driver's bind mount of its own home),
# then the libpod_parent cgroups and the empty /run dirs podman made since podman_private
# (conmon may still be leaving its cgroup: a few tries; rmdir only removes empty ones).
podman_teardown() {
  local d i
  $PODMAN rm -af >/dev/null 2>&1 || true
  $PODMAN system reset -f >/dev/null 2>&1 || true
  for d in /sys/fs/cgroup/*/libpod_parent; do
    if [ ! -d "$d" ] || grep -qxF "$d" <<<"$PRE_LIBPOD"; then continue; fi
    for i in 1 2 3 4 5 6 7 8 9 10; do
      rmdir "$d/conmon" 2>/dev/null || true; rmdir "$d" 2>/dev/null && break; sleep 0.1
    done
  done
  for d in /run/crun /run/runc /run/netns; do
    if [ -d "$d" ] && ! grep -qxF "$d" <<<"$PRE_LIBPOD" && [ -z "$(ls -A "$d")" ]; then
      # the network plugins bind-mount /run/netns onto itself (shared) before using it
      while mountpoint -q "$d"; do umount "$d" || break; done
      rmdir "$d" 2>/dev/null || true
    fi
  done
  return 0
}

# Starts `hako daemon` on $TMP/root and $TMP/hako.sock (extra flags as arguments), sets
# HAKO_PID and HAKOC, and waits until it answers.
start_hako() {
  mkdir -p "$TMP/root"
  "$HAKO" daemon --root "$TMP/root" -H "unix://$TMP/hako.sock" "$@" > "$TMP/hako.log" 2>&1 &
  HAKO_PID=$!
  HAKOC="$HAKO -H unix://$TMP/hako.sock"
  local i
  for ((i = 0; i < 100; i++)); do
    $HAKOC version >/dev/null 2>&1 && return 0
    kill -0 "$HAKO_PID" 2>/dev/null || { cat "$TMP/hako.log" >&2; echo "hako daemon exited" >&2; exit 1; }
    sleep 0.1
  done
  cat "$TMP/hako.log" >&2
  echo "hako daemon not answering after 10 s" >&2
  exit 1
}

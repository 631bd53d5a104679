#!/usr/bin/env bash
# Build the base images hako's tests need (busybox:latest, debian:bookworm)
# from Debian packages, with no registry, and import them into the daemon
# that `hako` reaches through the caller's environment (HAKO_HOST, ...).
#
# usage: scripts/images.sh [--only busybox|debian] [--no-import]
#   --no-import  build/cache the rootfs tarballs and print their paths on stdout
# env:   HAKO (CLI to run, default hako), HAKO_IMAGE_CACHE (default /var/cache/hako-images)
# Progress goes to stderr, one line per step, so stdout stays machine-readable.
set -euo pipefail
shopt -s inherit_errexit   # build_* run inside $(...): keep -e there

# Bump whenever the rootfs recipe below changes: it is part of every cache key.
SCRIPT_VERSION=1
SUITE=bookworm VARIANT=minbase
CACHE=${HAKO_IMAGE_CACHE:-/var/cache/hako-images}
export LC_ALL=C DEBIAN_FRONTEND=noninteractive   # apt output is parsed below

only=all import=1
while (($#)); do
  case $1 in
    --only) only=${2-}; shift $(($# > 1)) ;;
    --only=*) only=${1#--only=} ;;
    --no-import) import=0 ;;
    -h|--help) sed -n '2,9s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "images.sh: unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done
case $only in all|busybox|debian) ;; *) echo "images.sh: --only busybox|debian" >&2; exit 2 ;; esac

say() { printf '%s\n' "$*" >&2; }
key() { printf '%s\n' "$@" | sha256sum | cut -c1-16; }
arch=$(dpkg --print-architecture)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/hako-images.XXXXXX")
cleanup() {
  # An interrupted debootstrap can leave proc/sys (or a /dev bind) mounted in
  # its target: unmount them, and never let rm cross into another filesystem.
  grep -o " $tmp/[^ ]*" /proc/self/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf --one-file-system "$tmp"; rm -f "$CACHE"/*.tmp.$$
}
trap cleanup EXIT

apt_updated=0
apt_update() { ((apt_updated)) || { say "apt-get update"; apt-get -qq update >&2; apt_updated=1; }; }
candidate() { apt-cache policy "$1" 2>/dev/null | awk '$1 == "Candidate:" && $2 != "(none)" {print $2}'; }

# Numeric owners (the image's uids, not the host's names), no xattrs (tar's
# default); name order and gzip -n so an unchanged rootfs gives the same bytes.
# Written beside the final name, then renamed: the cache never holds a partial file.
pack() { # pack ROOTFS OUT [TAR-OPTION...]
  local root=$1 out=$2; shift 2
  mkdir -p "$CACHE"
  tar --numeric-owner --sort=name "$@" -C "$root" -c . | gzip -n >"$out.tmp.$$"
  mv -f "$out.tmp.$$" "$out"
  say "cached: $out"; echo "$out"
}

build_busybox() { # prints the tarball path
  local ver out try d=$tmp/busybox
  mkdir -p "$d/dl" "$d/deb"
  # Stale or empty apt lists (fresh machine) show up as no candidate or a failed
  # download: then apt-get update once and resolve the version again.
  for try in 1 2; do
    ver=$(candidate busybox-static)
    if [[ -n $ver ]]; then
      # The package version (and arch) pin the binary exactly; the rest is this script.
      out=$CACHE/busybox-$(key busybox "$SCRIPT_VERSION" "$arch" "busybox-static=$ver").tar.gz
      if [[ -s $out ]]; then say "cached: $out"; echo "$out"; return; fi
      # Sandbox user off: _apt cannot write into our 0700 temp dir.
      (cd "$d/dl" && apt-get -qq -o APT::Sandbox::User=root download "busybox-static=$ver") \
        >"$d/apt.log" 2>&1 && break
    fi
    ((try == 1)) || { [[ -z $ver ]] || cat "$d/apt.log" >&2; say "cannot download busybox-static${ver:+ $ver}"; return 1; }
    apt_update
  done
  say "building busybox rootfs from busybox-static $ver"
  dpkg-deb -x "$d"/dl/busybox-static_*.deb "$d/deb"
  # Layout of the official busybox image: every applet in /bin, Buildroot's
  # passwd/group, the usual empty top-level dirs.
  local r=$d/rootfs a applets
  mkdir -p "$r"/{bin,etc,dev,proc,sys,usr,home,root,tmp,var/www}
  chmod 1777 "$r/tmp"; chmod 700 "$r/root"
  cp -p "$d/deb/bin/busybox" "$r/bin/busybox"
  applets=$("$r/bin/busybox" --list)   # assignment, so a failure stops us
  for a in $applets; do
    [[ $a == busybox ]] || ln -sf busybox "$r/bin/$a"
  done
  cat >"$r/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
EOF
  local g=(root:0: daemon:1: bin:2: sys:3: adm:4: tty:5: disk:6: lp:7: mail:8:
    kmem:9: wheel:10:root cdrom:11: dialout:18: floppy:19: video:28: audio:29:
    shadow:42: www-data:33: operator:37: utmp:45: users:100: nogroup:65534:)
  printf '%s\n' "${g[@]}" | sed 's/:/:x:/' >"$r/etc/group"
  # Files we created carry today's mtime: clamp them to the binary's build time.
  pack "$r" "$out" --owner=0 --group=0 --mtime="@$(stat -c %Y "$r/bin/busybox")" --clamp-mtime
}

# The mirror apt already uses (never a hard-coded one): the first URI of the
# deb822 stanza whose Suites has exactly $SUITE (so not $SUITE-security),
# else the matching one-line entry of /etc/apt/sources.list.
mirror() {
  local f=/etc/apt/sources.list.d/debian.sources
  if [[ -r $f ]]; then
    awk -v s="$SUITE" '
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { t = ok = 0; u = ""; next }
      tolower($1) == "types:"  { for (i = 2; i <= NF; i++) if ($i == "deb") t = 1 }
      tolower($1) == "uris:"   { u = $2 }
      tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == s) ok = 1 }
      t && ok && u != "" { print u; exit }' "$f"
  elif [[ -r /etc/apt/sources.list ]]; then
    awk -v s="$SUITE" '$1 == "deb" {
      i = 2; if ($2 ~ /^\[/) { while (i < NF && $i !~ /\]$/) i++; i++ }
      if ($(i + 1) == s) { print $i; exit } }' /etc/apt/sources.list
  fi
}

build_debian() { # prints the tarball path
  local m out
  m=$(mirror); m=${m%/}
  [[ -n $m ]] || { say "no apt source for $SUITE found"; return 1; }
  # Inputs only: a rebuild from the same mirror/suite/variant reuses the cache.
  out=$CACHE/debian-$SUITE-$(key debian "$SCRIPT_VERSION" "$arch" "$m" "$SUITE" "$VARIANT").tar.gz
  if [[ -s $out ]]; then say "cached: $out"; echo "$out"; return; fi
  if ! command -v debootstrap >/dev/null; then
    say "installing debootstrap"; apt_update
    apt-get -qq -o DPkg::Lock::Timeout=300 install -y debootstrap >&2
  fi
  say "building debian:$SUITE rootfs (debootstrap --variant=$VARIANT) from $m"
  local r=$tmp/debian
  debootstrap --variant="$VARIANT" --arch="$arch" "$SUITE" "$r" "$m" >"$tmp/debootstrap.log" 2>&1 \
    || { tail -n 30 "$tmp/debootstrap.log" >&2; return 1; }
  # Like the official image: no host resolv.conf/hostname (the runtime mounts its
  # own), no downloaded .debs, package lists or bootstrap log (~60 MB of the 90).
  : >"$r/etc/resolv.conf"; : >"$r/etc/hostname"; chmod 644 "$r"/etc/{resolv.conf,hostname}
  find "$r/var/cache/apt" "$r/var/lib/apt/lists" -type f -delete
  rm -f "$r/var/log/bootstrap.log"
  pack "$r" "$out"
}

run() { # run NAME CMD REPO:TAG
  local file
  file=$("build_$1")
  if ((import)); then
    "${HAKO:-hako}" import --change "CMD [\"$2\"]" "$file" "$3"
    say "imported $3"
  else
    echo "$file"
  fi
}
if [[ $only == all || $only == busybox ]]; then run busybox sh busybox:latest; fi
if [[ $only == all || $only == debian ]]; then run debian bash "debian:$SUITE"; fi

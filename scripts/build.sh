#!/usr/bin/env bash
# Builds hako for use: `cargo build --release`, then the two programs that start often,
# linked statically: hako (every CLI call) and hako-runtime (every container's monitor and
# every runtime call). Here a dynamic start is mostly the loader and glibc probing the CPU
# (each CPUID traps to the hypervisor, about 6 us): `hako --version` takes 1.3 ms static
# against 2.0 dynamic. hako-runtime is built for musl, whose start takes 0.1 ms against
# glibc's 0.6 (with the musl target installed; else it is linked statically with glibc).
# The flag cannot go in .cargo/config.toml: cargo would also give it to the proc-macros it
# builds for the host, which cannot be static; `cargo rustc` gives it to one binary's link.
# A later plain `cargo build --release` may link them dynamically again: they still work.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release "$@"
cargo rustc --release "$@" -p hako --bin hako -- -C target-feature=+crt-static
musl=x86_64-unknown-linux-musl
if rustup target list --installed 2>/dev/null | grep -qx "$musl"; then
  cargo build --release "$@" -p hako-runtime --bin hako-runtime --target "$musl"
  install -m 0755 "target/$musl/release/hako-runtime" target/release/hako-runtime
else
  echo "build.sh: no $musl target (rustup target add $musl): hako-runtime linked with glibc" >&2
  cargo rustc --release "$@" -p hako-runtime --bin hako-runtime -- -C target-feature=+crt-static
fi

#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit, integration and interop tests.
# Tests start their own daemons on temporary roots and sockets and remove them.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# Two test binaries at a time: each starts daemons and real I/O; the machine has 2 cores.
cargo test --workspace --no-fail-fast -- --test-threads=2

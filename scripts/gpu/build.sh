#!/usr/bin/env bash
# Builds the stripped CUDA `worker` binary that scripts/gpu/check.sh runs on a GPU machine without
# cargo: target/gpu/worker. libcuda and libnvrtc are opened at run time, so this builds on a
# machine without CUDA; CUDARC_CUDA_VERSION picks the driver API version (13.0 by default).
set -euo pipefail
cd "$(dirname "$0")/../.."
export CUDARC_CUDA_VERSION="${CUDARC_CUDA_VERSION:-13000}"
cargo build --release -p murmuration-worker --features cuda
mkdir -p target/gpu
target_dir="${CARGO_TARGET_DIR:-target}"
cp "$target_dir/release/worker" target/gpu/worker
strip target/gpu/worker
ls -l target/gpu/worker

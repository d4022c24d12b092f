#!/usr/bin/env bash
# herd on aarch64, from an x86-64 host: builds the kernels and the engine for
# aarch64-unknown-linux-gnu and runs their tests under qemu-aarch64 (user-mode emulation).
#
#   - herd-kernels' tests hold every NEON kernel to its scalar reference. Under qemu's default
#     CPU (`max`, which has `sdot`) they run both levels, `Isa::Neon` and `Isa::NeonDot`.
#   - herd-model's golden tests (transformers' logits and generations, llama.cpp's quantized
#     outputs, the grouped matrices) run the engine on the NEON kernels: once on `max`
#     (`sdot`), once on a Cortex-A53 (ARMv8.0, no `sdot`), so detection picks each level.
#
# Needs Debian's gcc-aarch64-linux-gnu, libc6-dev-arm64-cross and qemu-user, and rustup's
# aarch64 standard library (`rustup target add aarch64-unknown-linux-gnu`); .ci/run installs
# them. Emulation says nothing of speed; it checks that the code is right.
set -euo pipefail
cd "$(dirname "$0")/.."

T=aarch64-unknown-linux-gnu
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
runner="qemu-aarch64 -L /usr/aarch64-linux-gnu"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="$runner"
golden=(--test engine_golden --test llama_cpp_quantized --test grouped_matrices --test reference_golden)

cargo clippy --target $T -p herd-kernels -p herd-model --all-targets -- -D warnings
cargo test --target $T -p herd-kernels
cargo test --target $T -p herd-model "${golden[@]}"
CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -cpu cortex-a53 -L /usr/aarch64-linux-gnu" \
  cargo test --target $T -p herd-model "${golden[@]}"

#!/usr/bin/env bash
# Makes the llama.cpp reference fixtures in crates/herd-model/tests/fixtures/llama_cpp/ from
# the llama.cpp tree inside the PyPI source package llama-cpp-python (built once, outside
# the repository). CI does not run this; the fixtures are committed.
#
#   LLAMA_CPP=/path/to/llama.cpp scripts/make_llama_cpp_fixtures.sh
#
# Build llama.cpp first (about 10 minutes on 2 cores):
#   curl -sSLO <sdist URL of llama-cpp-python from https://pypi.org/pypi/llama-cpp-python/json>
#   tar xzf llama_cpp_python-*.tar.gz; cd llama_cpp_python-*/vendor/llama.cpp
#   cmake -B build -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DCMAKE_BUILD_TYPE=Release
#   cmake --build build -j2 --target llama-quantize llama-bench llama-completion llama-server
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
LLAMA_CPP=${LLAMA_CPP:-/work/cache/llama.cpp}
SHARED=${HERD_SHARED:-$here/../shared}
out=$here/crates/herd-model/tests/fixtures/llama_cpp
work=${WORK:-$(mktemp -d)}
mkdir -p "$out"
gcc -O2 -o "$work/llama_greedy" "$here/scripts/llama_greedy.c" -I"$LLAMA_CPP/include" -I"$LLAMA_CPP/ggml/include" \
    -L"$LLAMA_CPP/build/bin" -lllama -lggml -lggml-base -Wl,-rpath,"$LLAMA_CPP/build/bin"
src=$SHARED/models/stories260K/stories260K.gguf
commit=$(cd "$LLAMA_CPP" && (git rev-parse --short HEAD 2>/dev/null || grep -o 'LLAMA_BUILD_COMMIT[^"]*"[^"]*"' build/common/build-info.cpp 2>/dev/null || echo unknown))
for q in Q8_0 Q4_0; do
    "$LLAMA_CPP/build/bin/llama-quantize" "$src" "$work/stories260K-$q.gguf" "$q" >/dev/null 2>&1
done
run() { # model-file prompt n name [--ignore-eos]
    "$work/llama_greedy" "$1" "$2" "$3" ${5:-} 2>/dev/null > "$out/$4.json"
}
# The greedy references run on copies that herd quantized with no F16 fallback (stories260K's
# FFN width, 172, is not a multiple of 32, and llama-quantize would store ffn_down as F16,
# where llama.cpp's F16 matrix product rounds differently from herd's; see README). The
# tensor manifests below pin herd's quantisers to llama-quantize's bytes separately.
cargo build --quiet --manifest-path "$here/Cargo.toml" -p herd
for q in Q8_0 Q4_0; do
    "$here/target/debug/herd" convert "$src" --type "$q" --fallback f32 -o "$work/herd-stories260K-$q.gguf" 2>/dev/null
done
for m in F32:$src Q8_0:$work/herd-stories260K-Q8_0.gguf Q4_0:$work/herd-stories260K-Q4_0.gguf; do
    name=${m%%:*}; file=${m#*:}
    run "$file" "Once upon a time" 100 "stories260K-$name-once_upon_a_time" --ignore-eos
    run "$file" "Lily and Tom went to the park. They saw a big dog" 80 "stories260K-$name-park" --ignore-eos
    run "$file" "The little bird" 60 "stories260K-$name-bird" --ignore-eos
done
echo "llama.cpp $commit" > "$out/SOURCE.txt"


# Per-tensor type and sha256 of llama-quantize's output, so that a test can check herd's
# quantisers write the same bytes (needs numpy; gguf-py comes with the llama.cpp tree).
for q in Q8_0 Q4_0; do
    PYTHONPATH="$LLAMA_CPP/gguf-py" python3 - "$work/stories260K-$q.gguf" > "$out/stories260K-$q.tensors.json" <<'PY'
import hashlib, json, sys
import gguf
r = gguf.GGUFReader(sys.argv[1])
print(json.dumps({t.name: {"type": t.tensor_type.name, "sha256": hashlib.sha256(bytes(t.data.tobytes())).hexdigest()}
                  for t in r.tensors}, indent=1, sort_keys=True))
PY
done
echo "wrote $(ls "$out" | wc -l) files to $out"

#!/usr/bin/env bash
# Makes crates/herd/tests/fixtures/stories_lora/: a LoRA adapter that `herd tune` trained on
# stories260K, and what two other tools compute with it:
#   peft_logits.safetensors  — Hugging Face transformers (loading the GGUF itself) + peft,
#                              loading the adapter folder unchanged: logits for a prompt;
#   llama_cpp_merged.json    — llama.cpp's greedy continuation on the GGUF that `herd merge`
#                              writes (f32), through scripts/llama_greedy.c.
# CI does not run this; the fixtures are committed. Needs python3 with torch, transformers,
# peft and gguf, and a llama.cpp build (see scripts/make_llama_cpp_fixtures.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
LLAMA_CPP=${LLAMA_CPP:-/work/cache/llama.cpp}
SHARED=${HERD_SHARED:-$here/../shared}
out=$here/crates/herd/tests/fixtures/stories_lora
work=${WORK:-$(mktemp -d)}
base=$SHARED/models/stories260K/stories260K.gguf
mkdir -p "$out"
cargo build --quiet --release --manifest-path "$here/Cargo.toml" -p herd
herd=$here/target/release/herd
rm -rf "$work/run"
"$herd" tune "$base" --data "$SHARED/data/gpteacher/toolformer-similarity-0.6-dataset.json" \
    --template alpaca --max-examples 300 --max-steps 40 --batch 4 --lr 5e-3 --seed 3 \
    --targets q_proj,k_proj,v_proj,o_proj,down_proj --out "$work/run" --quiet --threads 2
cp "$work/run/adapter/adapter_config.json" "$work/run/adapter/adapter_model.safetensors" "$out/"

# peft, on the adapter exactly as herd wrote it, on an Alpaca-style prompt tokenized by herd
# (stories260K's SentencePiece vocabulary; the tokenizer is tested against llama.cpp's).
prompt=$'Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\nName a colour.\n\n### Response:\n'
"$herd" tokenize --json "$base" "$prompt" > "$work/prompt.json"
python3 - "$base" "$out" "$work/prompt.json" <<'PY'
import json, sys, torch
from pathlib import Path
from safetensors.torch import save_file
from transformers import AutoConfig, AutoModelForCausalLM
from peft import PeftModel
base, out = Path(sys.argv[1]), Path(sys.argv[2])
cfg = AutoConfig.from_pretrained(base.parent, gguf_file=base.name)
cfg.pad_token_id = None  # the GGUF says 0xFFFFFFFF (none); transformers wants None
m = AutoModelForCausalLM.from_pretrained(base.parent, gguf_file=base.name, config=cfg)
m = PeftModel.from_pretrained(m, out).eval()
ids = torch.tensor([[t["id"] for t in json.load(open(sys.argv[3]))]])
with torch.no_grad():
    logits = m(ids).logits[0].float().contiguous()
save_file({"input_ids": ids[0].to(torch.int64), "logits": logits}, out / "peft_logits.safetensors")
print("peft logits", tuple(logits.shape))
PY

# llama.cpp on the merged model.
gcc -O2 -o "$work/llama_greedy" "$here/scripts/llama_greedy.c" -I"$LLAMA_CPP/include" -I"$LLAMA_CPP/ggml/include" \
    -L"$LLAMA_CPP/build/bin" -lllama -lggml -lggml-base -Wl,-rpath,"$LLAMA_CPP/build/bin"
"$herd" merge "$base" --lora "$out" --type f32 -o "$work/merged.gguf"
"$work/llama_greedy" "$work/merged.gguf" "Once upon a time" 80 --ignore-eos 2>/dev/null > "$out/llama_cpp_merged.json"
echo "wrote $(ls "$out" | wc -l) files to $out"

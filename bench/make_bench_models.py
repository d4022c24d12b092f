#!/usr/bin/env python3
"""Random-weight GGUF models with real shapes, for speed benchmarks (issue: speed).

Writes, into DIR (default: $HERD_BENCH_MODELS or ~/.cache/herd-bench), an F16 file per shape
with the PyPI `gguf` package, then Q8_0, Q4_0, Q4_K_M and Q5_K_M copies with llama.cpp's
llama-quantize (the same quantiser the peer uses, so both engines read identical bytes; Q5_K_M
is beyond the issue's list, as the other common k-quant mix: Q5_K and Q6_K, and for the Qwen
shape, whose width is not a multiple of 256, mostly Q5_1):

  tinyllama-1.1b  hidden 2048, 22 layers, 32 heads, 4 KV heads, FFN 5632, vocab 32000
  qwen2.5-0.5b    hidden 896, 24 layers, 14 heads, 2 KV heads, FFN 4864, vocab 151936
                  (llama architecture with Qwen2.5-0.5B's shape and tied embeddings; the
                  qkv bias is left out: 0.1% of the weights)

and, only where --shapes names it, a multi-head attention shape (as LLaMA 1/2 and Phi have):

  tinyllama-1.1b-mha  TinyLlama's shape with 32 KV heads

Weights are N(0, 0.02); speed does not depend on their values. The vocabulary is a dummy
SentencePiece one (bench inputs are token ids, never text).

  python3 bench/make_bench_models.py [--out DIR] [--llama-cpp DIR] [--shapes a,b] [--quants Q4_0,...]
"""
import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import gguf

SHAPES = {
    "tinyllama-1.1b": dict(hidden=2048, layers=22, heads=32, kv_heads=4, ffn=5632, vocab=32000, tied=False, ctx=2048),
    "qwen2.5-0.5b": dict(hidden=896, layers=24, heads=14, kv_heads=2, ffn=4864, vocab=151936, tied=True, ctx=4096),
    # Not made unless asked for (--shapes): multi-head attention, as LLaMA 1/2 and Phi have.
    "tinyllama-1.1b-mha": dict(hidden=2048, layers=22, heads=32, kv_heads=32, ffn=5632, vocab=32000, tied=False, ctx=4096),
}
DEFAULT_SHAPES = ["tinyllama-1.1b", "qwen2.5-0.5b"]
QUANTS = ["Q8_0", "Q4_0", "Q4_K_M", "Q5_K_M"]


def write_f16(path: Path, s: dict, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(path), "llama")
    h, hd = s["hidden"], s["hidden"] // s["heads"]
    w.add_name(path.stem)
    w.add_context_length(s["ctx"])
    w.add_embedding_length(h)
    w.add_block_count(s["layers"])
    w.add_feed_forward_length(s["ffn"])
    w.add_head_count(s["heads"])
    w.add_head_count_kv(s["kv_heads"])
    w.add_rope_dimension_count(hd)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(10000.0)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_tokenizer_model("llama")
    toks = [b"<unk>", b"<s>", b"</s>"] + [f"t{i}".encode() for i in range(3, s["vocab"])]
    w.add_token_list(toks)
    w.add_token_scores([0.0] * s["vocab"])
    w.add_token_types([2, 3, 3] + [1] * (s["vocab"] - 3))
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)

    def t(name, shape, norm=False):
        # GGUF lists dimensions innermost first; numpy arrays are [rows, cols].
        a = np.ones(shape, np.float32) if norm else (rng.standard_normal(shape, np.float32) * 0.02)
        w.add_tensor(name, a.astype(np.float32 if norm else np.float16))

    q, kv, f = h, s["kv_heads"] * hd, s["ffn"]
    t("token_embd.weight", (s["vocab"], h))
    for i in range(s["layers"]):
        p = f"blk.{i}."
        t(p + "attn_norm.weight", (h,), norm=True)
        t(p + "attn_q.weight", (q, h))
        t(p + "attn_k.weight", (kv, h))
        t(p + "attn_v.weight", (kv, h))
        t(p + "attn_output.weight", (h, q))
        t(p + "ffn_norm.weight", (h,), norm=True)
        t(p + "ffn_gate.weight", (f, h))
        t(p + "ffn_up.weight", (f, h))
        t(p + "ffn_down.weight", (h, f))
    t("output_norm.weight", (h,), norm=True)
    if not s["tied"]:
        t("output.weight", (s["vocab"], h))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("HERD_BENCH_MODELS", Path.home() / ".cache/herd-bench")))
    ap.add_argument("--llama-cpp", type=Path, default=Path(os.environ.get("LLAMA_CPP", "/work/cache/llama.cpp")))
    ap.add_argument("--shapes", default=",".join(DEFAULT_SHAPES), help=f"of {', '.join(SHAPES)}")
    ap.add_argument("--quants", default=",".join(QUANTS))
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    quantize = a.llama_cpp / "build/bin/llama-quantize"
    for name in a.shapes.split(","):
        f16 = a.out / f"{name}-F16.gguf"
        if not f16.exists():
            t0 = time.time()
            tmp = f16.with_suffix(".tmp")
            write_f16(tmp, SHAPES[name])
            tmp.rename(f16)
            print(f"wrote {f16} ({f16.stat().st_size / 1e9:.2f} GB) in {time.time() - t0:.0f} s")
        for q in a.quants.split(","):
            out = a.out / f"{name}-{q}.gguf"
            if out.exists():
                continue
            if not quantize.exists():
                sys.exit(f"{quantize} not found: build llama.cpp (bench/README.md) or pass --llama-cpp")
            subprocess.run([str(quantize), str(f16), str(out.with_suffix(".tmp")), q], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            out.with_suffix(".tmp").rename(out)
            print(f"wrote {out} ({out.stat().st_size / 1e9:.2f} GB)")


if __name__ == "__main__":
    main()

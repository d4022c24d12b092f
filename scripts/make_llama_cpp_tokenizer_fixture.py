#!/usr/bin/env python3
"""Writes crates/herd-model/tests/fixtures/llama_cpp_tokenize.json: the ids llama.cpp gives
for texts of our own (special tokens, scripts, whitespace, emoji, code) and a few rows of
shared/data with every GGUF vocabulary in shared/, with
add_special=false parse_special=false and with add_special=true parse_special=true.

    python3 scripts/make_llama_cpp_tokenizer_fixture.py LLAMA_CPP_DIR [SHARED_DIR] [--herd HERD]

LLAMA_CPP_DIR is a llama.cpp checkout built with CMake (build/bin/libllama.so); the small C
program scripts/llama_cpp_tokenize.c is compiled against it. With --herd (a built `herd`
binary) the hf-tiny llama folder is also converted with `herd convert` and tokenized by
llama.cpp, to check that llama.cpp reads herd's GGUF tokenizer metadata as herd does.

Rows of shared/data are referred to (file, line, field, length in characters), not copied.
"""
import json
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

TEXTS = [
    "",
    " ",
    "<s>Hello</s> world",
    "   <s>  spaced  </s>  ",
    "<|endoftext|>Hello<|endoftext|>",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi there <|im_end|>\n<|im_start|>assistant\n",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
    "<|user|>\nHello <|end|>\n<|assistant|> Hi",
    "<\uff5cbegin\u2581of\u2581sentence\uff5c>User: hi\n\nAssistant:",
    ">>TITLE<< A title >>ABSTRACT<<",
    "<fim_prefix>def add(a, b):\n    <fim_suffix>\n<fim_middle>",
    "[CLS] Hello [SEP] [MASK] [UNK]",
    "<unk> and <pad> and <|padding|>",
    "abc<|im_end|>def<s>ghi</s>",
    "Привет, мир! Γειά σου Κόσμε! مرحبا بالعالم नमस्ते दुनिया สวัสดีชาวโลก 안녕하세요 세계",
    "e\u0301 vs \u00e9, \u00c5 vs A\u030a, \ufb01 ligature, \u216b roman, \u00bd \u00bc, \u00b2 \u00b3, \u2460",
    "a\u00a0b\u2003c\u3000d\u200be\u2028f\u0085g\r\n\r\nh\t\t i",
    "\U0001f469\U0001f3fd\u200d\U0001f4bb \U0001f3f3\ufe0f\u200d\U0001f308 \U0001f1eb\U0001f1f7 1\ufe0f\u20e3",
    "fn main() {\n    let x = vec![1, 2, 3];\n    println!(\"{:?}\", x);\n}\n",
    "3.14159 2,718,281 1234567890 \u0661\u0662\u0663 \u0664\u0665\u0666 \u4e00\u4e8c\u4e09",
    "I'M sure HE'S here, THEY'LL come; we'Ve, you'D, it'S \u017f's",
    "x" + " " * 40 + "y" + "\n" * 10 + "z",
    "\u5403\u8461\u8404\u4e0d\u5410\u8461\u8404\u76ae\uff0c\u4e0d\u5403\u8461\u8404\u5012\u5410\u8461\u8404\u76ae\u3002",
    "\u5f7c\u306f\u300c\u3053\u3093\u306b\u3061\u306f\u300d\u3068\u8a00\u3063\u305f\u3002\uff76\uff80\uff76\uff85",
]

DATA = [
    {"file": "data/mt_bench/question.jsonl", "line": 0, "field": "turns", "index": 0, "chars": 400},
    {"file": "data/mt_bench/question.jsonl", "line": 10, "field": "turns", "index": 0, "chars": 400},
    {"file": "data/gsm8k/test.jsonl", "line": 0, "field": "question", "chars": 400},
    {"file": "data/huatuo_med_instruct/llama_data.json", "line": 0, "field": "output", "chars": 300},
    {"file": "data/huatuo_med_instruct/llama_data.json", "line": 1, "field": "instruction", "chars": 300},
]


def data_text(shared, ref):
    line = (shared / ref["file"]).read_bytes().decode("utf-8").split("\n")[ref["line"]]
    v = json.loads(line)[ref["field"]]
    if "index" in ref:
        v = v[ref["index"]]
    return v[: ref["chars"]]


def vocabularies(shared):
    out = {}
    for p in sorted((shared / "models/tokenizers/gguf-vocab").glob("*.gguf")):
        out[p.stem.removeprefix("ggml-vocab-")] = str(p.relative_to(shared))
    out["stories260K"] = "models/stories260K/stories260K.gguf"
    return out


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    herd = None
    if "--herd" in sys.argv:
        herd = sys.argv[sys.argv.index("--herd") + 1]
        args.remove(herd)
    llama = Path(args[0])
    shared = Path(args[1]) if len(args) > 1 else ROOT.parent / "shared"
    texts = TEXTS + [data_text(shared, r) for r in DATA]
    tmp = Path(tempfile.mkdtemp())
    exe = tmp / "llama_cpp_tokenize"
    subprocess.run(
        ["gcc", "-O1", f"-I{llama}/include", f"-I{llama}/ggml/include",
         str(ROOT / "scripts/llama_cpp_tokenize.c"), f"-L{llama}/build/bin", "-lllama",
         f"-Wl,-rpath,{llama}/build/bin", "-o", str(exe)],
        check=True,
    )
    stdin = b"".join(struct.pack("<I", len(t.encode())) + t.encode() for t in texts)
    files = {k: shared / v for k, v in vocabularies(shared).items()}
    if herd:
        gguf = tmp / "hf-tiny-llama.gguf"
        subprocess.run([herd, "convert", str(shared / "golden/hf-tiny/llama"), "-o", str(gguf),
                        "--type", "f32"], check=True)
        files["hf-tiny-llama (herd convert)"] = gguf
    commit = subprocess.run(["git", "-C", str(llama), "rev-parse", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    out = {
        "generator": "scripts/make_llama_cpp_tokenizer_fixture.py",
        "llama_cpp_commit": commit,
        "modes": ["add_special=false parse_special=false", "add_special=true parse_special=true"],
        "texts": TEXTS,
        "data_texts": DATA,
        "vocabularies": {},
    }
    for name, path in files.items():
        res = subprocess.run([str(exe), str(path)], input=stdin, capture_output=True, check=True)
        lines = res.stdout.decode().split("\n")[: 2 * len(texts)]
        ids = [[int(x) for x in l.split()] for l in lines]
        entry = {"ids": [[ids[2 * i], ids[2 * i + 1]] for i in range(len(texts))]}
        if name.endswith("(herd convert)"):
            entry["hf_dir"] = "golden/hf-tiny/llama"
        else:
            entry["file"] = str(path.relative_to(shared))
        out["vocabularies"][name] = entry
        print(name, sum(len(a) + len(b) for a, b in entry["ids"]), "ids")
    dest = ROOT / "crates/herd-model/tests/fixtures/llama_cpp_tokenize.json"
    # One text per line keeps the file diffable.
    with open(dest, "w", encoding="utf-8") as f:
        f.write("{\n")
        for k in ["generator", "llama_cpp_commit", "modes", "texts", "data_texts"]:
            f.write(f"{json.dumps(k)}: {json.dumps(out[k], ensure_ascii=False)},\n")
        f.write('"vocabularies": {\n')
        items = list(out["vocabularies"].items())
        for j, (name, e) in enumerate(items):
            f.write(f"{json.dumps(name)}: {{")
            f.write(", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in e.items() if k != "ids"))
            f.write(', "ids": [\n')
            f.write(",\n".join(json.dumps(x, separators=(",", ":")) for x in e["ids"]))
            f.write("\n]}" + ("," if j + 1 < len(items) else "") + "\n")
        f.write("}}\n")
    print(f"wrote {dest} ({dest.stat().st_size} bytes)")


if __name__ == "__main__":
    main()

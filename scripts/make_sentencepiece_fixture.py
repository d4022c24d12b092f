#!/usr/bin/env python3
"""Writes crates/herd-model/tests/fixtures/sentencepiece.json: the ids the `sentencepiece`
library gives for every line of shared/models/tokenizers/sentencepiece/botchan.txt (and a few
texts of our own) with each model in that folder.

    pip install sentencepiece
    python3 scripts/make_sentencepiece_fixture.py [SHARED_DIR]

To stay small the fixture keeps the ids of the first lines as they are and, for the rest,
an FNV-1a hash per block of lines (tests/tokenizer_sentencepiece.rs hashes the same way and
names the block that differs; run this script with --dump N to print block N's ids).
"""
import json
import sys
from pathlib import Path

import sentencepiece as spm

ROOT = Path(__file__).resolve().parent.parent
BLOCK = 64
FIRST = 16

# Texts of our own: Japanese, full/half-width forms NFKC folds, spaces SentencePiece
# squeezes, and characters none of the models know.
EXTRA = [
    "",
    "   ",
    "Hello   world  \t x\u3000y",
    "  leading and trailing spaces  ",
    "吾輩は猫である。名前はまだ無い。",
    "どこで生れたかとんと見当がつかぬ。何でも薄暗いじめじめした所でニャーニャー泣いていた事だけは記憶している。",
    "東京都の天気は晴れ、最高気温は２５度です。",
    "ｶﾀｶﾅとＡＢＣ１２３と①②③",
    "café naïve coöperate — “quotes” ‘single’ … ½ ﬁ",
    "emoji 🦙🚀 and ✅",
    "a\u2581b \u2581",
    "tab\tand\nnewline\r\nend",
]


def fnv1a(data: bytes, h: int = 0xCBF29CE484222325) -> int:
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def block_hash(lines_ids):
    h = 0xCBF29CE484222325
    for ids in lines_ids:
        for i in ids:
            h = fnv1a(i.to_bytes(4, "little"), h)
        h = fnv1a(b"\xff\xff\xff\xff", h)
    return f"{h:016x}"


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    shared = Path(args[0]) if args else ROOT.parent / "shared"
    folder = shared / "models/tokenizers/sentencepiece"
    # Bytes, not read_text(): universal newlines would drop the \r of each line.
    text = (folder / "botchan.txt").read_bytes().decode("utf-8")
    # Split at \n only: the file has CRLF line ends and the \r stays with its line.
    lines = text.split("\n")
    out = {
        "generator": "scripts/make_sentencepiece_fixture.py",
        "sentencepiece_version": spm.__version__,
        "text": "models/tokenizers/sentencepiece/botchan.txt",
        "lines": len(lines),
        "block": BLOCK,
        "first": FIRST,
        "extra_texts": EXTRA,
        "models": {},
    }
    for model in sorted(folder.glob("*.model")):
        sp = spm.SentencePieceProcessor(model_file=str(model))
        ids = [sp.encode(l) for l in lines]
        if "--dump" in sys.argv:
            n = int(args[-1])
            print(model.name, json.dumps(ids[n * BLOCK:(n + 1) * BLOCK]))
            continue
        extra = [sp.encode(t) for t in EXTRA]
        out["models"][model.stem] = {
            "first_lines": ids[:FIRST],
            "blocks": [block_hash(ids[i:i + BLOCK]) for i in range(0, len(ids), BLOCK)],
            "total_ids": sum(len(x) for x in ids),
            "extra_ids": extra,
            "extra_decoded": [sp.decode(x) for x in extra],
            "unk_id": sp.unk_id(),
        }
    if "--dump" in sys.argv:
        return
    dest = ROOT / "crates/herd-model/tests/fixtures/sentencepiece.json"
    dest.write_text(json.dumps(out, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"wrote {dest} ({dest.stat().st_size} bytes)")


if __name__ == "__main__":
    main()

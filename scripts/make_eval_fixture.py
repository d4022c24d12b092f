"""Per-choice log-likelihoods of real MMLU items computed by transformers, for herd-eval's test.

Writes crates/herd-eval/tests/fixtures/mmlu_transformers.json. The prompt, the split into context
and continuation tokens and the truncation follow lm-evaluation-harness (HFLM._encode_pair and
_loglikelihood_tokens), written out here independently of herd:

  context   = description + (shot + " " + gold + "\n\n")* + question
  question  = q.strip() + "\nA. a\nB. b\nC. c\nD. d\nAnswer:"
  whole     = encode(context + " X"); ctx = encode(context); cont = whole[len(ctx):]
  input     = (ctx + cont)[-(max_length + 1):][:-1]

Run from the repository root: pip install torch transformers; python scripts/make_eval_fixture.py
"""
import csv
import json
import os
import sys

import torch
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

SHARED = os.environ.get("HERD_SHARED", os.path.join(os.path.dirname(__file__), "..", "..", "shared"))
MMLU = os.path.join(SHARED, "data", "mmlu")
SUBJECTS = ["abstract_algebra", "high_school_geography"]
N_ITEMS = 6
MODELS = ["llama", "qwen2"]


def rows(path):
    """(line, row) of a CSV file; line is where the row starts (quoted fields may span lines)."""
    out = []
    with open(path, newline="", encoding="utf-8") as f:
        text = f.read()
    line = 1
    reader = csv.reader(text.splitlines(keepends=True))
    start = 1
    for r in reader:
        out.append((start, r))
        start = reader.line_num + 1
    return out


def doc_text(r):
    q, a, b, c, d, _ = r
    return f"{q.strip()}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\nAnswer:"


def context(subject, r, shots):
    s = f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"
    for sh in shots:
        s += doc_text(sh) + " " + sh[5] + "\n\n"
    return s + doc_text(r)


def encode_pair(tok, ctx, cont):
    n = len(ctx) - len(ctx.rstrip())
    if n:
        cont = ctx[-n:] + cont
        ctx = ctx[:-n]
    whole = tok.encode(ctx + cont, add_special_tokens=False)
    c = tok.encode(ctx, add_special_tokens=False)
    return c, whole[len(c):]


@torch.no_grad()
def loglikelihood(model, max_len, ctx_ids, cont_ids):
    inp = (ctx_ids + cont_ids)[-(max_len + 1):][:-1]
    logits = model(torch.tensor([inp])).logits[0].double().log_softmax(-1)
    n = len(cont_ids)
    rows_ = logits[len(inp) - n:]
    tgt = torch.tensor(cont_ids)
    lp = rows_.gather(1, tgt[:, None])[:, 0]
    greedy = bool((rows_.argmax(-1) == tgt).all())
    return float(lp.sum()), greedy


def main():
    out = {"note": __doc__.strip().splitlines()[0], "transformers": __import__("transformers").__version__,
           "torch": torch.__version__, "models": {}}
    for arch in MODELS:
        path = os.path.join(SHARED, "golden", "hf-tiny", arch)
        # The folder's tokenizer.json as it is: transformers 5's Qwen2Tokenizer class replaces
        # the file's pre-tokenizer (GPT-2's byte-level split in these tiny folders) with Qwen2's
        # digit-splitting one, so AutoTokenizer would tokenise " 4" differently from the file
        # that herd (and the tokenizers library) reads.
        tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(path, "tokenizer.json"))
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        max_len = model.config.max_position_embeddings
        items = []
        for subject in SUBJECTS:
            test = rows(os.path.join(MMLU, "test", f"{subject}_test.csv"))
            dev = rows(os.path.join(MMLU, "dev", f"{subject}_dev.csv"))
            for shots in (0, 1):
                for line, r in test[:N_ITEMS] if shots == 0 else test[:2]:
                    ctx = context(subject, r, [d for _, d in dev[:shots]])
                    conts = [" A", " B", " C", " D"]
                    lls, greedy, cont_ids = [], [], []
                    for c in conts:
                        ci, co = encode_pair(tok, ctx, c)
                        ll, g = loglikelihood(model, max_len, ci, co)
                        lls.append(ll)
                        greedy.append(g)
                        cont_ids.append(co)
                    gold = "ABCD".index(r[5])
                    items.append({"key": f"{subject}_test:{line}", "num_fewshot": shots, "context": ctx,
                                  "context_ids": ci, "continuation_ids": cont_ids,
                                  "loglikelihoods": lls, "greedy": greedy, "gold": gold,
                                  "acc": int(max(range(4), key=lambda i: lls[i]) == gold)})
        out["models"][arch] = {"max_length": max_len, "items": items}
    dst = os.path.join(os.path.dirname(__file__), "..", "crates", "herd-eval", "tests", "fixtures", "mmlu_transformers.json")
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    with open(dst, "w") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
    print("wrote", dst, {k: len(v["items"]) for k, v in out["models"].items()})


if __name__ == "__main__":
    sys.exit(main())

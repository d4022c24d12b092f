#!/usr/bin/env python3
"""LoRA fine-tuning speed and memory: herd tune vs PyTorch + peft on the CPU, in one run.

Both train the same LoRA (rank, alpha, targets) on stories260K with the same Alpaca-format
examples (GPTeacher toolformer, rendered with the Alpaca template, loss on the response only),
the same batch size, number of steps, learning rate and thread count, one after the other.
Reported per engine: training tokens/s (tokens of the batches, padding excluded, over the time
of the training steps) and peak resident memory of its process (ru_maxrss from wait4), then
the ratios herd / PyTorch.

  pip install torch transformers peft gguf
  python3 bench/tune_vs_peft.py [--herd target/release/herd] [--threads 2] [--steps 30]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("HERD_SHARED", ROOT.parent / "shared"))
MODEL = SHARED / "models/stories260K/stories260K.gguf"
DATA = SHARED / "data/gpteacher/toolformer-similarity-0.6-dataset.json"

TORCH_SIDE = r'''
import json, random, sys, time, torch
from pathlib import Path
from transformers import AutoConfig, AutoModelForCausalLM
from peft import LoraConfig, get_peft_model
a = json.loads(sys.argv[1])
torch.set_num_threads(a["threads"])
torch.manual_seed(a["seed"])
model = Path(a["model"])
cfg = AutoConfig.from_pretrained(model.parent, gguf_file=model.name)
cfg.pad_token_id = None
m = AutoModelForCausalLM.from_pretrained(model.parent, gguf_file=model.name, config=cfg)
m = get_peft_model(m, LoraConfig(r=a["rank"], lora_alpha=a["alpha"], lora_dropout=a["dropout"],
                                 target_modules=a["targets"], task_type="CAUSAL_LM"))
# The examples as herd tokenized them (transformers cannot read this GGUF's vocabulary):
# (ids, index of the first trained token).
examples = [tuple(e) for e in json.load(open(a["examples_file"]))]
random.Random(a["seed"]).shuffle(examples)
opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=a["lr"])
m.train()
tokens, t_train, i = 0, 0.0, 0
for step in range(a["steps"]):
    batch = [examples[(i + k) % len(examples)] for k in range(a["batch"])]
    i += a["batch"]
    T = max(len(x) for x, _ in batch)
    ids = torch.tensor([x + [0] * (T - len(x)) for x, _ in batch])
    att = torch.tensor([[1] * len(x) + [0] * (T - len(x)) for x, _ in batch])
    lab = torch.tensor([[-100] * n + x[n:] + [-100] * (T - len(x)) for x, n in batch])
    t0 = time.perf_counter()
    loss = m(input_ids=ids, attention_mask=att, labels=lab).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
    opt.step()
    opt.zero_grad()
    t_train += time.perf_counter() - t0
    tokens += int(att.sum())
print(json.dumps({"tokens": tokens, "seconds": t_train, "loss": float(loss)}))
'''


def alpaca_examples(herd, limit):
    """Alpaca-rendered examples tokenized by herd: (ids of prompt + answer + EOS, prompt length)."""
    head = ("Below is an instruction that describes a task. Write a response that appropriately "
            "completes the request.\n\n### Instruction:\n{}\n\n### Response:\n")
    def ids(text):
        out = subprocess.run([herd, "tokenize", "--json", str(MODEL), text], check=True,
                             capture_output=True, text=True).stdout
        return [t["id"] for t in json.loads(out)]
    examples = []
    for r in json.load(open(DATA)):
        instr = r["instruction"] + ("\n\n" + r["input"] if r["input"] else "")
        p = ids(head.format(instr))
        full = ids(head.format(instr) + r["output"]) + [2]
        if len(full) <= 512 and len(p) < len(full):
            examples.append((full, len(p)))
        if len(examples) >= limit:
            break
    return examples


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--herd", default=str(ROOT / "target/release/herd"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--examples", type=int, default=300)
    ap.add_argument("--rank", type=int, default=8)
    a = ap.parse_args()
    common = dict(rank=a.rank, alpha=16.0, dropout=0.05, lr=5e-3, batch=a.batch, steps=a.steps,
                  threads=a.threads, seed=3, examples=a.examples, max_len=512,
                  targets=["q_proj", "k_proj", "v_proj", "o_proj"], model=str(MODEL), data=str(DATA))
    results = {}
    tmpdir = tempfile.TemporaryDirectory()  # removed when main returns
    tmp = tmpdir.name
    if True:
        common["examples_file"] = str(Path(tmp) / "examples.json")
        json.dump(alpaca_examples(a.herd, a.examples), open(common["examples_file"], "w"))
        run = Path(tmp) / "run"
        cmd = [a.herd, "tune", str(MODEL), "--data", str(DATA), "--template", "alpaca",
               "--max-examples", str(a.examples), "--max-steps", str(a.steps), "--batch", str(a.batch),
               "--rank", str(a.rank), "--alpha", "16", "--dropout", "0.05", "--lr", "5e-3",
               "--targets", ",".join(common["targets"]), "--val", "0", "--save-every", "0",
               "--seed", "3", "--threads", str(a.threads), "--quiet", "--grad-checkpointing", "off",
               "--out", str(run)]
        # Each engine's process is measured on its own (wait4 gives that child's peak RSS).
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        _, status, ru = os.wait4(p.pid, 0)
        if status:
            sys.exit("herd tune failed: " + p.stderr.read()[-2000:])
        last = [json.loads(l) for l in open(run / "metrics.jsonl")][-1]
        results["herd"] = (last["tokens"] / last["elapsed"], ru.ru_maxrss / 1024)
    p = subprocess.Popen([sys.executable, "-c", TORCH_SIDE, json.dumps(common)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, ru = os.wait4(p.pid, 0)
    out, err = p.stdout.read(), p.stderr.read()
    if status:
        sys.exit("the PyTorch run failed: " + err[-2000:])
    t = json.loads(out.strip().splitlines()[-1])
    results["pytorch+peft"] = (t["tokens"] / t["seconds"], ru.ru_maxrss / 1024)
    print(f"LoRA r={a.rank} on q,k,v,o of stories260K, batch {a.batch}, {a.steps} steps, {a.threads} threads")
    print("| engine | training tokens/s | peak RSS (MiB) |")
    print("| --- | ---: | ---: |")
    for k, (tps, rss) in results.items():
        print(f"| {k} | {tps:.0f} | {rss:.0f} |")
    h, pt = results["herd"], results["pytorch+peft"]
    print(f"\nherd / PyTorch: speed {h[0] / pt[0]:.2f}x, memory {h[1] / pt[1]:.2f}x")


if __name__ == "__main__":
    main()

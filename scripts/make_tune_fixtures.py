#!/usr/bin/env python3
"""Reference numbers for herd's training tests, computed by PyTorch + peft on CPU in float32.

For the hf-tiny llama model (../shared/golden/hf-tiny/llama) and one fixed batch of two
right-padded sequences whose first tokens are masked out of the loss (label -100), writes to
crates/herd-train/tests/fixtures/:

  lora_init/            a PEFT adapter (r=4, alpha=8, all seven projections) with seeded,
                        non-zero A and B, saved by peft's save_pretrained
  lora_reference.safetensors
                        loss (one forward), every adapter gradient, the adapter after five
                        torch.optim.AdamW steps (lr 1e-2, betas 0.9/0.999, eps 1e-8, wd 0.01)
                        and the loss before each of those steps
  full_reference.safetensors
                        the same for full fine-tuning (every weight's gradient; weights after
                        five AdamW steps with lr 1e-3)
  batch.json            the batch: input_ids, attention_mask, labels

Run:  pip install torch transformers peft safetensors
      python3 scripts/make_tune_fixtures.py
"""
import json
import os

import torch
import transformers
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.environ.get("HERD_SHARED", os.path.join(HERE, "..", "..", "shared"))
MODEL = os.path.join(SHARED, "golden", "hf-tiny", "llama")
OUT = os.path.join(HERE, "..", "crates", "herd-train", "tests", "fixtures")
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)


def load():
    m = transformers.AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32, attn_implementation="eager")
    return m.float().train()


def batch():
    golden = json.load(open(os.path.join(MODEL, "golden.json")))
    a = golden["input_ids"]
    b = a[:11]
    T = len(a)
    ids = torch.tensor([a, b + [0] * (T - len(b))])
    mask = torch.tensor([[1] * T, [1] * len(b) + [0] * (T - len(b))])
    labels = ids.clone()
    labels[:, :6] = -100
    labels[mask == 0] = -100
    return ids, mask, labels


def adamw_run(model, params, lr, ids, mask, labels):
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        losses.append(loss.item())
        loss.backward()
        opt.step()
    return torch.tensor(losses)


def main():
    os.makedirs(OUT, exist_ok=True)
    ids, mask, labels = batch()
    with open(os.path.join(OUT, "batch.json"), "w") as f:
        json.dump({"input_ids": ids.tolist(), "attention_mask": mask.tolist(), "labels": labels.tolist()}, f)

    # LoRA
    model = load()
    cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=TARGETS, bias="none", task_type="CAUSAL_LM")
    pm = get_peft_model(model, cfg)
    g = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    pm.save_pretrained(os.path.join(OUT, "lora_init"))
    out = pm(input_ids=ids, attention_mask=mask, labels=labels)
    out.loss.backward()
    tensors = {"loss": out.loss.detach().reshape(1)}
    for n, p in pm.named_parameters():
        if p.requires_grad:
            key = n.replace(".default", "")
            tensors["grad." + key] = p.grad.detach().clone()
    pm.zero_grad()
    trainable = [p for p in pm.parameters() if p.requires_grad]
    tensors["losses"] = adamw_run(pm, trainable, 1e-2, ids, mask, labels)
    for n, p in pm.named_parameters():
        if p.requires_grad:
            tensors["final." + n.replace(".default", "")] = p.detach().clone()
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(OUT, "lora_reference.safetensors"))

    # Full fine-tuning
    model = load()
    out = model(input_ids=ids, attention_mask=mask, labels=labels)
    out.loss.backward()
    tensors = {"loss": out.loss.detach().reshape(1)}
    for n, p in model.named_parameters():
        tensors["grad." + n] = p.grad.detach().clone()
    model.zero_grad()
    tensors["losses"] = adamw_run(model, list(model.parameters()), 1e-3, ids, mask, labels)
    for n, p in model.named_parameters():
        tensors["final." + n] = p.detach().clone()
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(OUT, "full_reference.safetensors"))
    print("lora loss", tensors and float(out.loss), "written to", OUT)


if __name__ == "__main__":
    main()

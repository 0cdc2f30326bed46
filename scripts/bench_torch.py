#!/usr/bin/env python3
"""The `worker bench` workload through PyTorch + transformers + PEFT, for the speed ratio.

Same checkpoint (a directory written by `worker tiny-model`, or any Qwen2 directory with
tokenizer.json), same rows (eval_data/data.jsonl: the first --train-rows for training, the last
--eval-rows for evaluation), same ChatML tokenisation and loss mask, same training semantics
(micro-batch 2, grad-accum 4, one epoch, AdamW, lr 2e-4 with 5 warm-up steps, clip 1.0, LoRA r 16 /
alpha 32 on all seven projections, dropout 0, no shuffle) and eval batching (8 rows, longest first).
Run by hand, not in CI:

    worker tiny-model --out /tmp/tiny
    python3 scripts/bench_torch.py --model /tmp/tiny --threads 2
    worker bench --model /tmp/tiny
"""
import argparse
import json
import os
import sys
import time

import torch
from peft import LoraConfig, get_peft_model
from tokenizers import Tokenizer
from transformers import Qwen2ForCausalLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from chatml_reference import encode_row  # noqa: E402  (the same ChatML algorithm as the tests)

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def batch(examples):
    seq = max(len(e[0]) for e in examples)
    ids = torch.zeros(len(examples), seq, dtype=torch.long)
    labels = torch.full((len(examples), seq), -100, dtype=torch.long)
    for r, (row_ids, mask) in enumerate(examples):
        ids[r, :len(row_ids)] = torch.tensor(row_ids)
        for t in range(1, len(row_ids)):
            if mask[t]:
                labels[r, t] = row_ids[t]
    return ids, labels


def token_losses(model, ids, labels):
    logits = model(input_ids=ids).logits.float()
    shifted, targets = logits[:, :-1], labels[:, 1:]
    ce = torch.nn.functional.cross_entropy(shifted.reshape(-1, shifted.shape[-1]), targets.reshape(-1),
                                           ignore_index=-100, reduction="none").view(targets.shape)
    return ce, targets != -100


def lr_at(step, total, warmup=5, lr=2e-4):
    return lr * step / warmup if step < warmup else lr * max(0.0, (total - step) / max(1, total - warmup))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--data", default="eval_data/data.jsonl")
    p.add_argument("--train-rows", type=int, default=64)
    p.add_argument("--eval-rows", type=int, default=128)
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    tok = Tokenizer.from_file(f"{a.model}/tokenizer.json")
    rows = [json.loads(line) for line in open(a.data) if line.strip()]
    train = [encode_row(tok, r, 4096) for r in rows[:a.train_rows]]
    evals = sorted([encode_row(tok, r, 4096) for r in rows[-a.eval_rows:]], key=lambda e: -len(e[0]))
    model = Qwen2ForCausalLM.from_pretrained(a.model, attn_implementation="eager").float()
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=TARGETS, bias="none",
                      task_type="CAUSAL_LM")
    model = get_peft_model(model, lora)

    model.eval()
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(evals), 8):
            token_losses(model, *batch(evals[i:i + 8]))
    eval_s = time.perf_counter() - start

    params = [p for n, p in model.named_parameters() if "lora_" in n]
    opt = torch.optim.AdamW(params, lr=2e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    micro = [train[i:i + 2] for i in range(0, len(train), 2)]
    groups = [micro[i:i + 4] for i in range(0, len(micro), 4)]
    model.train()
    start = time.perf_counter()
    for step, group in enumerate(groups):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, len(groups))
        tokens = sum(batch(mb)[1][:, 1:].ne(-100).sum().item() for mb in group)
        for mb in group:
            ce, valid = token_losses(model, *batch(mb))
            ((ce * valid).sum() / tokens).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad()
    train_s = time.perf_counter() - start
    train_tokens = sum(len(e[0]) for e in train)
    print(json.dumps({"engine": "pytorch", "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "train_tokens": train_tokens, "train_seconds": train_s,
                      "train_tokens_per_s": train_tokens / train_s, "eval_rows": len(evals),
                      "eval_seconds": eval_s, "eval_rows_per_s": len(evals) / eval_s}))


if __name__ == "__main__":
    main()

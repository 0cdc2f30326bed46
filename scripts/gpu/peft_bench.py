#!/usr/bin/env python3
"""The `worker bench --synthetic` workload through PyTorch + transformers + PEFT.

Same model directory (config.json + model.safetensors, e.g. from `worker random-model --shape
qwen2.5-1.5b --bf16`), same token rows (row r, position t: id 3 + (7919·t + 104729·r) mod
(vocab − 3); the first quarter of each row is prompt, the rest is in the loss), same training
step (LoRA r 16 / alpha 32 / dropout 0.1 on q, k, v, o, gate, up, down; AdamW lr 2e-4,
betas 0.9/0.999, eps 1e-8, no weight decay; global-norm clipping at 1.0; one micro-batch of
--batch rows per optimizer step), one untimed warm-up step then --steps timed steps per length.
The base runs in --dtype (bf16 by default) with sdpa attention; PEFT keeps the adapter in f32.
Eval: mean over rows of each row's mean token loss, --eval-batch rows per forward pass, one
untimed pass then a timed one.

Prints one JSON object (and writes it to --out when given). Run by scripts/gpu/check.sh.
"""
import argparse
import json
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import Qwen2ForCausalLM

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def rows(count, seq, vocab, offset=0):
    ids = torch.empty(count, seq, dtype=torch.long)
    for r in range(count):
        t = torch.arange(seq, dtype=torch.long)
        ids[r] = 3 + (t * 7919 + (r + offset) * 104729) % (vocab - 3)
    labels = ids.clone()
    labels[:, : seq // 4] = -100
    return ids, labels


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", default="bf16", choices=["bf16", "f32"])
    p.add_argument("--seqs", default="1024,2048,4096")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--eval-shape", default="64x1024")
    p.add_argument("--eval-batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    torch.manual_seed(42)
    model = Qwen2ForCausalLM.from_pretrained(a.model, dtype=dtype, attn_implementation="sdpa").to(a.device)
    vocab = model.config.vocab_size
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.1, target_modules=TARGETS, task_type="CAUSAL_LM")
    model = get_peft_model(model, lora)
    adapter_dtypes = sorted({str(p.dtype) for p in model.parameters() if p.requires_grad})
    cuda = a.device.startswith("cuda")

    # every length starts from the same fresh adapter, as `worker bench --synthetic` does, so the
    # first-step losses of the two engines are comparable
    fresh = {k: v.detach().clone() for k, v in model.state_dict().items() if "lora_" in k}
    train = []
    for seq in [int(s) for s in a.seqs.split(",")]:
        model.load_state_dict(fresh, strict=False)
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=2e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        marks, losses = [], []
        start = time.perf_counter()
        for step in range(a.steps + 1):
            ids, labels = rows(a.batch, seq, vocab, offset=step * a.batch)
            ids, labels = ids.to(a.device), labels.to(a.device)
            loss = model(input_ids=ids, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(float(loss))  # synchronises
            sync(a.device)
            marks.append(time.perf_counter())
        seconds = marks[-1] - marks[0]
        figures = {
            "batch": a.batch,
            "seq": seq,
            "steps": a.steps,
            "warmup_seconds": marks[0] - start,
            "seconds": seconds,
            "tokens_per_s": a.batch * seq * a.steps / seconds,
            "first_loss": losses[0],
            "peak_allocated_bytes": torch.cuda.max_memory_allocated() if cuda else None,
            "peak_reserved_bytes": torch.cuda.max_memory_reserved() if cuda else None,
        }
        print(json.dumps(figures), flush=True)
        train.append(figures)
        del opt

    model.load_state_dict(fresh, strict=False)  # B = 0: the base model's eval loss
    model.eval()
    count, length = (int(x) for x in a.eval_shape.split("x"))
    ids, labels = rows(count, length, vocab)

    def evaluate():
        total = 0.0
        with torch.no_grad():
            for i in range(0, count, a.eval_batch):
                x = ids[i : i + a.eval_batch].to(a.device)
                y = labels[i : i + a.eval_batch].to(a.device)
                logits = model(input_ids=x).logits[:, :-1].float()
                target = y[:, 1:]
                ce = torch.nn.functional.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100, reduction="none"
                ).view(target.shape)
                mask = target != -100
                total += float(((ce * mask).sum(1) / mask.sum(1)).sum())
        return total / count

    with model.disable_adapter():
        evaluate()
        sync(a.device)
        start = time.perf_counter()
        loss = evaluate()
        sync(a.device)
        seconds = time.perf_counter() - start
    result = {
        "engine": "pytorch+peft",
        "torch": torch.__version__,
        "device": a.device,
        "gpu": torch.cuda.get_device_name() if cuda else None,
        "dtype": a.dtype,
        "adapter_dtypes": adapter_dtypes,
        "attention": "sdpa",
        "train": train,
        "eval": {"rows": count, "len": length, "batch": a.eval_batch, "seconds": seconds,
                 "rows_per_s": count / seconds, "loss": loss},
    }
    text = json.dumps(result)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()

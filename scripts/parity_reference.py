#!/usr/bin/env python3
"""Reference numbers from PyTorch + transformers + PEFT for worker/tests/parity.rs.

Run by hand (not in CI):

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install torch transformers peft safetensors
    /tmp/venv/bin/python scripts/parity_reference.py worker/tests/fixtures/parity

It builds a tiny random Qwen2ForCausalLM (float32, CPU), a PEFT LoRA adapter with non-zero B,
token-id examples with prompt masks, and writes: the checkpoint (f32 and a bf16 copy), the initial
and trained adapters in PEFT format, and reference.json with logits, eval losses, per-step train
losses, pre-clip gradient norms and learning rates. The training loop is written out here (not
HF Trainer) so its semantics are exactly the ones DESIGN.md §5 states:
micro-batches of consecutive examples (no shuffle), right padding, optimizer steps over groups of
grad_accum micro-batches (last group partial), step loss = sum of token CE over the group /
supervised tokens of the group, global-norm clipping (clip_grad_norm_), AdamW(0.9, 0.999, 1e-8),
lr(s) = lr*s/warmup during warm-up, then lr*(total-s)/(total-warmup) — the same numbers as
transformers.get_linear_schedule_with_warmup (checked below).
"""
import copy
import json
import os
import sys

import torch
import transformers
import peft
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import Qwen2Config, Qwen2ForCausalLM

OUT = sys.argv[1] if len(sys.argv) > 1 else "worker/tests/fixtures/parity"
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
CONFIG = dict(micro_batch=2, grad_accum=2, epochs=2, lr=0.01, warmup_steps=2, weight_decay=0.01,
              max_grad_norm=1.0)
CLIPPED = 4.5  # between the pre-clip norms of the steps: some steps clip, some do not
VOCAB = 96

torch.manual_seed(1234)
torch.use_deterministic_algorithms(True)


def build_model():
    cfg = Qwen2Config(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      rope_theta=1000.0, rms_norm_eps=1e-6, tie_word_embeddings=True, hidden_act="silu",
                      attention_dropout=0.0, use_sliding_window=False)
    cfg._attn_implementation = "eager"
    model = Qwen2ForCausalLM(cfg).float().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn_like(p))
            else:
                p.copy_(0.2 * torch.randn_like(p))
    return model


def examples(n, lo, hi, seed, zero_mask_last=False):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        length = int(torch.randint(lo, hi + 1, (1,), generator=g))
        ids = torch.randint(0, VOCAB, (length,), generator=g).tolist()
        prompt = int(torch.randint(1, max(2, length // 2), (1,), generator=g))
        mask = [0] * prompt + [1] * (length - prompt)
        if zero_mask_last and i == n - 1:
            mask = [0] * length
        out.append({"input_ids": ids, "loss_mask": mask})
    return out


def batch(exs):
    seq = max(len(e["input_ids"]) for e in exs)
    ids = torch.zeros(len(exs), seq, dtype=torch.long)
    labels = torch.full((len(exs), seq), -100, dtype=torch.long)
    for r, e in enumerate(exs):
        n = len(e["input_ids"])
        ids[r, :n] = torch.tensor(e["input_ids"])
        for t in range(1, n):
            if e["loss_mask"][t] == 1:
                labels[r, t] = e["input_ids"][t]
    return ids, labels


def token_losses(model, ids, labels):
    logits = model(input_ids=ids).logits.float()
    shift_logits, shift_labels = logits[:, :-1], labels[:, 1:]
    ce = torch.nn.functional.cross_entropy(shift_logits.reshape(-1, VOCAB), shift_labels.reshape(-1),
                                           ignore_index=-100, reduction="none").view(shift_labels.shape)
    return ce, (shift_labels != -100)


@torch.no_grad()
def eval_loss(model, exs):
    means = []
    for e in exs:
        ids, labels = batch([e])
        ce, valid = token_losses(model, ids, labels)
        if valid.sum() == 0:
            continue
        means.append((ce.sum() / valid.sum()).item())
    return sum(means) / len(means), len(means), len(exs) - len(means)


def lr_at(step, total, warmup, lr):
    if step < warmup:
        return lr * step / max(1, warmup)
    return lr * max(0.0, (total - step) / max(1, total - warmup))


def train(model, exs, max_grad_norm):
    params = [p for n, p in model.named_parameters() if "lora_" in n]
    opt = torch.optim.AdamW(params, lr=CONFIG["lr"], betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=CONFIG["weight_decay"])
    micro = [exs[i:i + CONFIG["micro_batch"]] for i in range(0, len(exs), CONFIG["micro_batch"])]
    groups = [micro[i:i + CONFIG["grad_accum"]] for i in range(0, len(micro), CONFIG["grad_accum"])]
    total = len(groups) * CONFIG["epochs"]
    sched = transformers.get_linear_schedule_with_warmup(opt, CONFIG["warmup_steps"], total)
    losses, norms, lrs, step = [], [], [], 0
    model.train()
    for _ in range(CONFIG["epochs"]):
        for group in groups:
            lr = lr_at(step, total, CONFIG["warmup_steps"], CONFIG["lr"])
            assert abs(opt.param_groups[0]["lr"] - lr) < 1e-15, (opt.param_groups[0]["lr"], lr)
            tokens = sum(batch(mb)[1][:, 1:].ne(-100).sum().item() for mb in group)
            step_loss = 0.0
            for mb in group:
                ids, labels = batch(mb)
                ce, valid = token_losses(model, ids, labels)
                loss = (ce * valid).sum() / tokens
                loss.backward()
                step_loss += loss.item()
            norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
            opt.step()
            sched.step()
            opt.zero_grad()
            losses.append(step_loss)
            norms.append(norm.item())
            lrs.append(lr)
            step += 1
    model.eval()
    return losses, norms, lrs


def main():
    os.makedirs(OUT, exist_ok=True)
    base = build_model()
    base.save_pretrained(OUT, safe_serialization=True)
    bf16 = copy.deepcopy(base).to(torch.bfloat16)
    bf16.save_pretrained(os.path.join(OUT, "model_bf16"), safe_serialization=True)

    train_ex = examples(6, 5, 24, seed=1)
    eval_ex = examples(5, 5, 24, seed=2, zero_mask_last=True)
    logits_ids = [3, 17, 42, 8, 91, 5, 60, 33]
    with torch.no_grad():
        logits_base = base(input_ids=torch.tensor([logits_ids])).logits[0].tolist()
    base_loss, rows, skipped = eval_loss(base, eval_ex)

    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=TARGETS, init_lora_weights=False,
                      bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(copy.deepcopy(base), lora)
    model.save_pretrained(os.path.join(OUT, "adapter_init"))
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([logits_ids])).logits[0].tolist()
    init_loss, _, _ = eval_loss(model, eval_ex)

    start = copy.deepcopy(model.state_dict())
    losses, norms, lrs = train(model, train_ex, CONFIG["max_grad_norm"])
    final_loss, _, _ = eval_loss(model, eval_ex)
    model.save_pretrained(os.path.join(OUT, "adapter_trained"))

    model.load_state_dict(start)
    losses_c, _, _ = train(model, train_ex, CLIPPED)
    final_c, _, _ = eval_loss(model, eval_ex)

    ref = {
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__},
        "config": CONFIG, "config_clipped_max_grad_norm": CLIPPED,
        "lora": {"r": 4, "alpha": 8},
        "logits_ids": logits_ids, "logits": logits, "logits_base": logits_base,
        "base_eval_loss": base_loss, "init_eval_loss": init_loss, "eval_rows": rows, "eval_rows_skipped": skipped,
        "train_losses": losses, "grad_norms": norms, "lrs": lrs, "final_eval_loss": final_loss,
        "train_losses_clipped": losses_c, "final_eval_loss_clipped": final_c,
        "examples_train": train_ex, "examples_eval": eval_ex,
    }
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump(ref, f)
    print(json.dumps({k: ref[k] for k in ["versions", "base_eval_loss", "init_eval_loss", "final_eval_loss",
                                          "final_eval_loss_clipped", "train_losses", "grad_norms"]}, indent=1))


if __name__ == "__main__":
    main()

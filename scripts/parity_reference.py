#!/usr/bin/env python3
"""Reference numbers from PyTorch + transformers + PEFT for worker/tests/parity.rs.

Run by hand (not in CI), from the repository root:

    python3 -m venv .venv-parity
    .venv-parity/bin/pip install torch transformers peft safetensors numpy
    .venv-parity/bin/python scripts/parity_reference.py worker/tests/fixtures/parity

It builds a tiny random Qwen2ForCausalLM (float32, CPU), a PEFT LoRA adapter with non-zero B,
token-id examples with prompt masks, and writes: the checkpoint (f32 and a bf16 copy), the initial
and trained adapters in PEFT format, reference.json with logits, eval losses, per-step train
losses, pre-clip gradient norms and learning rates, and the fixture README.md. The training loop
is written out here (not HF Trainer) so its semantics are exactly the ones docs/training.md states:
micro-batches of consecutive examples (no shuffle), right padding, optimizer steps over groups of
grad_accum micro-batches (last group partial), step loss = sum of token CE over the group /
supervised tokens of the group, global-norm clipping (clip_grad_norm_), AdamW(0.9, 0.999, 1e-8),
lr(s) = lr*s/warmup during warm-up, then lr*(total-s)/(total-warmup) — the same numbers as
transformers.get_linear_schedule_with_warmup (asserted at every step below).

As a cross-check of the conventions a reimplementation must follow (rotate-half RoPE with
inv_freq = theta^(-2i/d), GQA head h -> KV head h // (heads/kv_heads), scale 1/sqrt(head_dim),
RMSNorm w * x / sqrt(mean(x^2) + eps), tied lm_head, LoRA y += (alpha/r) * B(A x)), an independent
float64 NumPy forward pass over the saved files must reproduce the PyTorch logits (asserted).

The same command writes the same bytes (the adapter_config.json target list is sorted: PEFT keeps
it as a set, whose order otherwise follows PYTHONHASHSEED).
"""
import copy
import json
import os
import platform
import sys

import numpy as np
import safetensors
import torch
import transformers
import peft
from peft import LoraConfig, get_peft_model
from safetensors import safe_open
from safetensors.numpy import load_file
from transformers import Qwen2Config, Qwen2ForCausalLM

OUT = sys.argv[1] if len(sys.argv) > 1 else "worker/tests/fixtures/parity"
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
CONFIG = dict(micro_batch=2, grad_accum=2, epochs=2, lr=0.01, warmup_steps=2, weight_decay=0.01,
              max_grad_norm=1.0)
# The second run's clip threshold lies between the steps' pre-clip norms (about 3.9 to 5.9), so
# some steps clip and some do not. A threshold below every norm (e.g. 0.05) would NOT test more
# than the main run, which already clips every step at 1.0: AdamW is invariant to a global
# gradient scale (up to eps), so clipping every step to 0.05 gives the main run's losses within
# ~2e-6 relative (recorded below as train_losses_clip_0_05 to show it).
CLIPPED = 4.5
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


def numpy_logits(out, ids, adapter_dir=None, scale=2.0):
    """Independent float64 Qwen2 forward over the saved files (no torch, no transformers)."""
    w = {k: v.astype(np.float64) for k, v in load_file(os.path.join(out, "model.safetensors")).items()}
    a = {} if adapter_dir is None else {
        k: v.astype(np.float64) for k, v in load_file(os.path.join(adapter_dir, "adapter_model.safetensors")).items()}
    cfg = json.load(open(os.path.join(out, "config.json")))
    heads, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg["hidden_size"] // heads
    rp = cfg.get("rope_parameters") or {}
    theta = rp.get("rope_theta", cfg.get("rope_theta"))
    eps = cfg["rms_norm_eps"]

    def lin(x, name):
        y = x @ w[name + ".weight"].T
        if name + ".bias" in w:
            y = y + w[name + ".bias"]
        if a:
            pa, pb = "base_model.model." + name + ".lora_A.weight", "base_model.model." + name + ".lora_B.weight"
            y = y + scale * (x @ a[pa].T @ a[pb].T)
        return y

    def rms(x, g):
        return g * x / np.sqrt((x * x).mean(-1, keepdims=True) + eps)

    def rope(x, t):
        inv = 1.0 / theta ** (np.arange(0, hd, 2) / hd)
        emb = np.concatenate([np.outer(np.arange(t), inv)] * 2, -1)
        rot = np.concatenate([-x[..., hd // 2:], x[..., :hd // 2]], -1)
        return x * np.cos(emb) + rot * np.sin(emb)

    x, t = w["model.embed_tokens.weight"][ids], len(ids)
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        h = rms(x, w[p + "input_layernorm.weight"])
        q = rope(lin(h, p + "self_attn.q_proj").reshape(t, heads, hd).transpose(1, 0, 2), t)
        k = rope(lin(h, p + "self_attn.k_proj").reshape(t, kv, hd).transpose(1, 0, 2), t)
        v = lin(h, p + "self_attn.v_proj").reshape(t, kv, hd).transpose(1, 0, 2)
        k, v = np.repeat(k, heads // kv, 0), np.repeat(v, heads // kv, 0)
        sc = q @ k.transpose(0, 2, 1) / np.sqrt(hd) + np.triu(np.full((t, t), -np.inf), 1)
        sc = np.exp(sc - sc.max(-1, keepdims=True))
        sc /= sc.sum(-1, keepdims=True)
        x = x + lin((sc @ v).transpose(1, 0, 2).reshape(t, heads * hd), p + "self_attn.o_proj")
        h = rms(x, w[p + "post_attention_layernorm.weight"])
        g, u = lin(h, p + "mlp.gate_proj"), lin(h, p + "mlp.up_proj")
        x = x + lin(g / (1 + np.exp(-g)) * u, p + "mlp.down_proj")
    return rms(x, w["model.norm.weight"]) @ w["model.embed_tokens.weight"].T


def sort_target_modules(adapter_dir):
    """Sort the target list (PEFT saves a set) and drop PEFT's auto-generated model card."""
    card = os.path.join(adapter_dir, "README.md")
    if os.path.exists(card):
        os.remove(card)
    path = os.path.join(adapter_dir, "adapter_config.json")
    with open(path) as f:
        cfg = json.load(f)
    cfg["target_modules"] = sorted(cfg["target_modules"])
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")


def tensor_names(path):
    with safe_open(path, "np") as f:
        return [(k, f.get_slice(k).get_dtype(), f.get_slice(k).get_shape()) for k in f.keys()]


def dir_size(path):
    return sum(os.path.getsize(os.path.join(d, n)) for d, _, ns in os.walk(path) for n in ns)


def write_readme(out, ref):
    v = ref["versions"]
    files = []
    for d, _, ns in sorted(os.walk(out)):
        for n in sorted(ns):
            if n != "README.md":
                p = os.path.join(d, n)
                files.append(f"| `{os.path.relpath(p, out)}` | {os.path.getsize(p)} |")
    base = "\n".join(f"    {k}  {dt} {sh}" for k, dt, sh in tensor_names(os.path.join(out, "model.safetensors")))
    lora = "\n".join(f"    {k}  {dt} {sh}" for k, dt, sh in
                     tensor_names(os.path.join(out, "adapter_init", "adapter_model.safetensors")))
    cfg = json.load(open(os.path.join(out, "adapter_init", "adapter_config.json")))
    short = {k: cfg[k] for k in ["peft_type", "task_type", "r", "lora_alpha", "lora_dropout", "target_modules",
                                 "bias", "fan_in_fan_out", "init_lora_weights", "use_rslora", "use_dora"]}
    text = f"""# Parity fixtures (PyTorch + transformers + PEFT)

Written by `scripts/parity_reference.py` (run by hand, not in CI; this file is written by it too)
on CPU in float32 with Python {v['python']}, torch {v['torch']}, transformers {v['transformers']},
peft {v['peft']}, safetensors {v['safetensors']}, numpy {v['numpy']}:

```
python3 -m venv .venv-parity
.venv-parity/bin/pip install torch transformers peft safetensors numpy
.venv-parity/bin/python scripts/parity_reference.py worker/tests/fixtures/parity
```

The same command writes the same bytes (checked by running it twice, with different PYTHONHASHSEED). The numbers are
cross-checked inside the script by an independent float64 NumPy forward pass over the saved files
(max |logit difference| {ref['numpy_check']['max_abs_diff_logits']:.1e} with the adapter,
{ref['numpy_check']['max_abs_diff_logits_base']:.1e} without, against max |logit|
{ref['numpy_check']['max_abs_logit']:.2f}).

## Files

| file | what |
|---|---|
| `config.json`, `model.safetensors` | tiny random `Qwen2ForCausalLM`: vocab 96, hidden 32, 2 layers, 4 query / 2 KV heads (head_dim 8), intermediate 64, RoPE θ 1000, RMSNorm eps 1e-6, tied embeddings (no `lm_head.weight` in the file); weights N(0, 0.2²), q/k/v biases N(0, 0.1²), norm weights 1 + 0.1·N(0, 1). transformers 5 writes θ as `rope_parameters.rope_theta` (no top-level `rope_theta`) and `dtype` (not `torch_dtype`) |
| `model_bf16/` | the same weights saved in bf16 (`logits_base_bf16` in reference.json: PyTorch logits of these bf16 weights computed in f32) |
| `adapter_init/` | PEFT LoRA r 4, alpha 8 (scale 2), dropout 0, all seven projections, `init_lora_weights=False`: A and B both keep nn.Linear's default Kaiming-uniform init, so B ≠ 0 and the adapter moves the logits (mean |Δ| ≈ {ref['numpy_check']['mean_abs_lora_effect']:.2f}) |
| `adapter_trained/` | that adapter after the main training run |
| `reference.json` | everything below, all numbers as JSON float64 (f32 values widened) |
| `generation_config.json` | written by transformers' `save_pretrained`; unused |

Sizes in bytes (total with this README {ref['_total_size']} bytes):

| file | bytes |
|---|---|
""" + "\n".join(files) + f"""

## reference.json

- `logits_ids` `{ref['logits_ids']}`; `logits` [8, 96] with `adapter_init` applied (scale alpha/r = 2),
  `logits_base` without it, `logits_base_bf16` from `model_bf16/` (bf16 weights widened to f32).
- `examples_train` (6) and `examples_eval` (5, the last with an all-zero mask) as
  `{{"input_ids", "loss_mask"}}`; a label at t counts iff `loss_mask[t] == 1` and t ≥ 1 (logits[t-1]
  predict ids[t]).
- `base_eval_loss`, `init_eval_loss` (mean over eval examples with ≥ 1 supervised token of the
  example's mean token CE), `eval_rows` {ref['eval_rows']}, `eval_rows_skipped` {ref['eval_rows_skipped']}.
- `config` {json.dumps(ref['config'])}: {len(ref['train_losses'])} optimizer steps
  (3 micro-batches of 2 → 2 steps per epoch, the second one partial), `lrs` {ref['lrs']}.
- `train_losses` (step loss before the update), `grad_norms` (pre-clip global norm over the LoRA
  parameters), `lrs`, `final_eval_loss`. Step 0 has lr 0, so `train_losses[0..2]` are the same for any
  optimizer; the update is visible from `train_losses[2]` on, in `grad_norms[2..]` and the final loss.
- `train_losses_clipped`, `grad_norms_clipped`, `final_eval_loss_clipped`: the same run with
  `max_grad_norm` = `config_clipped_max_grad_norm` ({ref['config_clipped_max_grad_norm']}), between the steps' norms
  so that only some steps clip.
- `train_losses_unclipped`, `final_eval_loss_unclipped`: no clipping (max_grad_norm = ∞), and
  `train_losses_clip_0_05`: every step clipped to 0.05, equal to the main run within ~2e-6 (AdamW
  ignores a global gradient scale), which is why 0.05 is not the clipped run.

## Names

Base model tensors (`model.safetensors`; `model_bf16/` has the same names in BF16):

{base}

PEFT adapter tensors (`adapter_*/adapter_model.safetensors`, no adapter name in the key; A is
`[r, in]`, B is `[out, r]`):

{lora}

`adapter_config.json` (main fields; the file also carries PEFT's other defaults):

```json
{json.dumps(short, indent=2)}
```

## Tolerances (worker/tests/parity.rs)

Logits within 1e-4 × the largest |logit|; base and initial eval losses within 1e-4 relative;
every train loss, pre-clip gradient norm and the final eval losses within 1e-3 relative; learning
rates within 1e-12; the bf16 checkpoint's logits within 5e-2 × the largest |logit| of
`logits_base`.
"""
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write(text)


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
        logits_bf16 = bf16.float()(input_ids=torch.tensor([logits_ids])).logits[0].tolist()
    base_loss, rows, skipped = eval_loss(base, eval_ex)

    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=TARGETS, init_lora_weights=False,
                      bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(copy.deepcopy(base), lora)
    model.save_pretrained(os.path.join(OUT, "adapter_init"))
    sort_target_modules(os.path.join(OUT, "adapter_init"))
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([logits_ids])).logits[0].tolist()
    init_loss, _, _ = eval_loss(model, eval_ex)

    start = copy.deepcopy(model.state_dict())
    losses, norms, lrs = train(model, train_ex, CONFIG["max_grad_norm"])
    final_loss, _, _ = eval_loss(model, eval_ex)
    model.save_pretrained(os.path.join(OUT, "adapter_trained"))
    sort_target_modules(os.path.join(OUT, "adapter_trained"))

    runs = {}
    for name, clip in [("clipped", CLIPPED), ("unclipped", float("inf")), ("clip_0_05", 0.05)]:
        model.load_state_dict(start)
        l, n, _ = train(model, train_ex, clip)
        runs[name] = (l, n, eval_loss(model, eval_ex)[0])

    # Independent check of the conventions: float64 NumPy forward over the saved files.
    np_base = numpy_logits(OUT, logits_ids)
    np_lora = numpy_logits(OUT, logits_ids, os.path.join(OUT, "adapter_init"))
    d_base = float(np.abs(np_base - np.array(logits_base)).max())
    d_lora = float(np.abs(np_lora - np.array(logits)).max())
    scale = float(np.abs(np.array(logits)).max())
    assert d_base < 1e-5 * scale and d_lora < 1e-5 * scale, (d_base, d_lora, scale)

    ref = {
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__, "peft": peft.__version__,
                     "safetensors": safetensors.__version__, "numpy": np.__version__},
        "config": CONFIG, "config_clipped_max_grad_norm": CLIPPED,
        "lora": {"r": 4, "alpha": 8},
        "logits_ids": logits_ids, "logits": logits, "logits_base": logits_base, "logits_base_bf16": logits_bf16,
        "base_eval_loss": base_loss, "init_eval_loss": init_loss, "eval_rows": rows, "eval_rows_skipped": skipped,
        "train_losses": losses, "grad_norms": norms, "lrs": lrs, "final_eval_loss": final_loss,
        "train_losses_clipped": runs["clipped"][0], "grad_norms_clipped": runs["clipped"][1],
        "final_eval_loss_clipped": runs["clipped"][2],
        "train_losses_unclipped": runs["unclipped"][0], "final_eval_loss_unclipped": runs["unclipped"][2],
        "train_losses_clip_0_05": runs["clip_0_05"][0],
        "numpy_check": {"max_abs_diff_logits_base": d_base, "max_abs_diff_logits": d_lora, "max_abs_logit": scale,
                        "mean_abs_lora_effect": float(np.abs(np.array(logits) - np.array(logits_base)).mean())},
        "examples_train": train_ex, "examples_eval": eval_ex,
    }
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump(ref, f)
    ref["_total_size"] = dir_size(OUT)
    write_readme(OUT, ref)
    ref["_total_size"] = dir_size(OUT)
    write_readme(OUT, ref)  # again, now that README.md's own size is counted
    assert ref["_total_size"] < 1 << 20, ref["_total_size"]
    print(json.dumps({k: ref[k] for k in ["versions", "base_eval_loss", "init_eval_loss", "final_eval_loss",
                                          "final_eval_loss_clipped", "final_eval_loss_unclipped", "train_losses",
                                          "grad_norms", "train_losses_clipped", "grad_norms_clipped",
                                          "numpy_check", "_total_size"]}, indent=1))


if __name__ == "__main__":
    main()

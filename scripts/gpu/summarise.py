#!/usr/bin/env python3
"""Summarises a scripts/gpu/check.sh run: parity against the CPU, then Burn's figures as ratios
to PyTorch + PEFT measured in the same run. Writes OUT/summary.json; prints markdown."""
import glob
import json
import os
import sys

out = sys.argv[1]


def load(name):
    try:
        with open(os.path.join(out, name)) as f:
            text = f.read().strip()
        return json.loads(text.splitlines()[-1]) if text else None
    except (OSError, ValueError):
        return None


def smi_peak(name):
    try:
        with open(os.path.join(out, name)) as f:
            values = [int(line.strip()) for line in f if line.strip().isdigit()]
        return max(values) if values else None
    except OSError:
        return None


def rel(a, b):
    return abs(a - b) / abs(b) if a is not None and b not in (None, 0) else None


gib = lambda b: None if b is None else b / 2**30
fmt = lambda v, d=2: "–" if v is None else f"{v:.{d}f}"
lines, summary = [], {"parity": {}, "train": [], "eval": None}

cpu = load("parity-cpu-f32.json")
lines.append("## Parity on the tiny model (against the CPU, f32)\n")
lines.append("| run | eval loss | rel. diff | max rel. diff of step losses |")
lines.append("|---|---|---|---|")
for path in sorted(glob.glob(os.path.join(out, "parity-*.json"))):
    name = os.path.basename(path)[len("parity-"):-len(".json")]
    run = load(os.path.basename(path))
    if run is None:
        lines.append(f"| {name} | failed | | |")
        continue
    d_eval = rel(run["eval_loss"], cpu["eval_loss"]) if cpu else None
    d_steps = None
    if cpu and len(run["train_losses"]) == len(cpu["train_losses"]):
        d_steps = max(rel(a, b) for a, b in zip(run["train_losses"], cpu["train_losses"]))
    summary["parity"][name] = {"eval_loss": run["eval_loss"], "eval_rel": d_eval, "steps_rel": d_steps}
    lines.append(f"| {name} | {run['eval_loss']:.6f} | {fmt(d_eval, 6) if d_eval is not None else '–'} | "
                 f"{fmt(d_steps, 6) if d_steps is not None else '–'} |")

burn, peft = load("burn.json"), load("peft.json")
burn_dtype = (burn or {}).get("precision", "?")
peft_dtype = (peft or {}).get("dtype", "?")
lines.append(f"\n## Training, batch 2 (Burn {burn_dtype} base vs PyTorch + PEFT {peft_dtype}, sdpa)\n")
lines.append("| batch × seq | Burn tokens/s | PEFT tokens/s | Burn / PEFT | Burn memory GiB | PEFT peak GiB "
             "(allocated / reserved) | first-step loss Burn / PEFT |")
lines.append("|---|---|---|---|---|---|---|")
peft_train = {t["seq"]: t for t in (peft or {}).get("train", [])}
for t in (burn or {}).get("train", []):
    p = peft_train.get(t["seq"], {})
    ratio = t["tokens_per_s"] / p["tokens_per_s"] if p.get("tokens_per_s") else None
    row = {"seq": t["seq"], "burn_tokens_per_s": t["tokens_per_s"], "peft_tokens_per_s": p.get("tokens_per_s"),
           "ratio": ratio, "burn_bytes": t.get("peak_bytes"), "peft_allocated_bytes": p.get("peak_allocated_bytes"),
           "peft_reserved_bytes": p.get("peak_reserved_bytes"), "burn_first_loss": t.get("first_loss"),
           "peft_first_loss": p.get("first_loss")}
    summary["train"].append(row)
    lines.append(f"| {t['batch']} × {t['seq']} | {t['tokens_per_s']:.0f} | {fmt(p.get('tokens_per_s'), 0)} | "
                 f"{fmt(ratio)} | {fmt(gib(t.get('peak_bytes')))} | {fmt(gib(p.get('peak_allocated_bytes')))} / "
                 f"{fmt(gib(p.get('peak_reserved_bytes')))} | {fmt(t.get('first_loss'), 4)} / "
                 f"{fmt(p.get('first_loss'), 4)} |")
if burn and peft:
    b, p = burn["eval"], peft["eval"]
    summary["eval"] = {"burn_rows_per_s": b["rows_per_s"], "peft_rows_per_s": p["rows_per_s"],
                       "ratio": b["rows_per_s"] / p["rows_per_s"], "burn_loss": b["loss"], "peft_loss": p["loss"]}
    lines.append(f"\n## Eval, {b['rows']} rows × {b['len']} tokens\n")
    lines.append("| Burn rows/s | PEFT rows/s | Burn / PEFT | eval loss Burn / PEFT (base model) |")
    lines.append("|---|---|---|---|")
    lines.append(f"| {b['rows_per_s']:.1f} | {p['rows_per_s']:.1f} | {b['rows_per_s'] / p['rows_per_s']:.2f} | "
                 f"{b['loss']:.4f} / {p['loss']:.4f} |")
summary["nvidia_smi_peak_mib"] = {"burn": smi_peak("smi-burn.csv"), "peft": smi_peak("smi-peft.csv")}
lines.append(f"\nnvidia-smi peak device memory (MiB, whole device, sampled every 200 ms): "
             f"Burn {summary['nvidia_smi_peak_mib']['burn']}, PEFT {summary['nvidia_smi_peak_mib']['peft']}")
if peft:
    lines.append(f"\nPyTorch {peft.get('torch')} on {peft.get('gpu')}; PEFT adapter dtypes {peft.get('adapter_dtypes')}.")
with open(os.path.join(out, "summary.json"), "w") as f:
    json.dump(summary, f, indent=1)
print("\n".join(lines))

#!/usr/bin/env python3
"""Reference ChatML token ids for worker/tests/chat_qwen.rs (run by hand, not in CI).

Implements the ChatML rules of docs/training.md (FLock OFF's SFTDataset algorithm) with the
Python `tokenizers` package on the exact Qwen2.5 tokenizer (the shared fixtures'
qwen2.5-tokenizer): each segment encoded separately without special tokens, contents stripped,
assistant segments (with their <|im_end|>\\n) in the loss, trailing unpaired message dropped, right
truncation. One difference from FLock: a null/absent/empty system emits no system block.

    pip install tokenizers==0.21.1
    python3 scripts/chatml_reference.py > worker/tests/fixtures/chatml_qwen.json
"""
import json
import os
import sys

from tokenizers import Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
TOKENIZER = os.path.join(HERE, "..", "..", "shared", "fixtures", "qwen2.5-tokenizer", "tokenizer.json")

ROWS = [
    {"system": "You are a careful calculator.", "conversations": [
        {"role": "user", "content": "  What is 17 plus 25?  "},
        {"role": "assistant", "content": "The answer is 42."}]},
    {"system": None, "conversations": [
        {"role": "user", "content": "Translate 'chat' from French: ça va? Größe — naïve café 東京 🙂"},
        {"role": "assistant", "content": "\n'chat' means \"cat\".\n\nIndentation:\n    def f(x):\n        return x\n"},
        {"role": "user", "content": "And 'chien'?"},
        {"role": "assistant", "content": "'chien' means \"dog\"."},
        {"role": "user", "content": "a trailing unpaired message that is dropped"}]},
    {"system": "   ", "conversations": [
        {"role": "user", "content": "Say <|im_end|> literally?"},
        {"role": "assistant", "content": "I cannot\twrite tabs   and spaces   reliably."}]},
    {"conversations": [
        {"role": "user", "content": "A long question " * 20},
        {"role": "assistant", "content": "A long answer " * 20}]},
]
MAX_SEQ_LEN = [4096, 4096, 4096, 64]


def encode_row(tok, row, max_seq_len):
    ids, mask = [], []

    def push(text, supervised):
        seg = tok.encode(text, add_special_tokens=False).ids
        ids.extend(seg)
        mask.extend([1 if supervised else 0] * len(seg))

    system = (row.get("system") or "").strip()
    if system:
        push(f"<|im_start|>system\n{system}<|im_end|>\n", False)
    conv = row["conversations"]
    for i in range(0, len(conv) - 1, 2):
        user, assistant = conv[i], conv[i + 1]
        assert user["role"] == "user" and assistant["role"] == "assistant"
        push(f"<|im_start|>user\n{user['content'].strip()}<|im_end|>\n<|im_start|>assistant\n", False)
        push(f"{assistant['content'].strip()}<|im_end|>\n", True)
    return ids[:max_seq_len], mask[:max_seq_len]


def main():
    tok = Tokenizer.from_file(TOKENIZER)
    cases = []
    for row, max_len in zip(ROWS, MAX_SEQ_LEN):
        ids, mask = encode_row(tok, row, max_len)
        cases.append({"row": row, "max_seq_len": max_len, "ids": ids, "mask": mask})
    json.dump({"source": "scripts/chatml_reference.py with tokenizers==0.21.1 on shared/fixtures/qwen2.5-tokenizer",
               "cases": cases}, sys.stdout, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()

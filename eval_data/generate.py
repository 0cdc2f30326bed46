#!/usr/bin/env python3
"""Deterministic generator of the default evaluation set and the demo miner datasets.

Every row is a chat about a small task whose answer is computed here, so the data is correct by
construction. Python standard library only; the same seed always writes the same bytes.

    python3 eval_data/generate.py            # eval_data/data.jsonl (300 rows, seed 1)
    python3 eval_data/generate.py --demo     # eval_data/demo/*.jsonl
    python3 eval_data/generate.py --rows 500 --seed 9 --out /tmp/other.jsonl
"""
import argparse
import json
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
WORDS = ["apple", "river", "garden", "planet", "window", "yellow", "banana", "silver", "marble",
         "candle", "forest", "rocket", "pencil", "butter", "castle", "dragon", "summer", "violet",
         "tomato", "island", "kitten", "basket", "little", "orange", "puzzle", "button"]
SYSTEMS = [None, None, "You are a careful calculator.", "You are a helpful assistant.",
           "Answer with one short sentence."]


def task_add(r):
    a, b = r.randint(2, 99), r.randint(2, 99)
    q = r.choice(["What is {a} plus {b}?", "Add {a} and {b}.", "Compute {a} + {b}."]).format(a=a, b=b)
    return q, f"The answer is {a + b}."


def task_sub(r):
    a, b = r.randint(20, 99), r.randint(1, 19)
    q = r.choice(["What is {a} minus {b}?", "Subtract {b} from {a}.", "Compute {a} - {b}."]).format(a=a, b=b)
    return q, f"The answer is {a - b}."


def task_mul(r):
    a, b = r.randint(2, 12), r.randint(2, 12)
    q = r.choice(["What is {a} times {b}?", "Multiply {a} by {b}.", "Compute {a} * {b}."]).format(a=a, b=b)
    return q, f"The answer is {a * b}."


def task_mod(r):
    a, b = r.randint(10, 99), r.randint(2, 9)
    q = r.choice(["What is the remainder when {a} is divided by {b}?", "Compute {a} mod {b}."]).format(a=a, b=b)
    return q, f"The answer is {a % b}."


def task_sort(r):
    xs = r.sample(range(1, 60), r.randint(3, 5))
    q = r.choice(["Sort these numbers in ascending order: {l}.", "Put {l} in order from smallest to largest."])
    return q.format(l=", ".join(map(str, xs))), "The sorted list is " + ", ".join(map(str, sorted(xs))) + "."


def task_vowels(r):
    w = r.choice(WORDS)
    n = sum(c in "aeiou" for c in w)
    q = r.choice(["How many vowels are in the word {w}?", "Count the vowels in {w}."]).format(w=w)
    return q, f"The answer is {n}."


def task_letters(r):
    w = r.choice(WORDS)
    q = r.choice(["How many letters are in the word {w}?", "Count the letters in {w}."]).format(w=w)
    return q, f"The answer is {len(w)}."


def task_reverse(r):
    w = r.choice(WORDS)
    q = r.choice(["Reverse the word {w}.", "Write {w} backwards."]).format(w=w)
    return q, f"The reversed word is {w[::-1]}."


def task_binary(r):
    n = r.randint(2, 63)
    q = r.choice(["Convert {n} to binary.", "What is {n} in binary?"]).format(n=n)
    return q, f"The answer is {n:b}."


def task_compare(r):
    a, b = r.sample(range(1, 200), 2)
    q = r.choice(["Which is larger, {a} or {b}?", "Which number is bigger: {a} or {b}?"]).format(a=a, b=b)
    return q, f"The larger number is {max(a, b)}."


def task_days(r):
    d, k = r.randrange(7), r.randint(1, 10)
    q = r.choice(["What day is {k} days after {d}?", "If today is {d}, what day is it in {k} days?"])
    return q.format(k=k, d=DAYS[d]), f"The answer is {DAYS[(d + k) % 7]}."


def task_km(r):
    k = r.randint(1, 20)
    q = r.choice(["How many meters are in {k} kilometers?", "Convert {k} km to meters."]).format(k=k)
    return q, f"The answer is {k * 1000} meters."


TASKS = [task_add, task_sub, task_mul, task_mod, task_sort, task_vowels, task_letters,
         task_reverse, task_binary, task_compare, task_days, task_km]

COLOURS = ["red", "blue", "green", "purple", "golden", "grey", "pale", "dark"]
THINGS = ["the sea", "an old oak", "a quiet street", "the morning sky", "a cat", "a garden",
          "fresh bread", "a mountain", "the moon", "a river", "a violin", "a lantern"]
FEELINGS = ["calm", "bright", "gentle", "lonely", "warm", "restless", "soft", "proud"]


def off_topic(r):
    a, b, c = r.choice(THINGS), r.choice(COLOURS), r.choice(FEELINGS)
    q = r.choice(["Describe {a} in one line.", "Write a short line of poetry about {a}.",
                  "How does {a} make you feel?"]).format(a=a)
    return q, r.choice([f"{a.capitalize()} is {b} and {c}, like a song at dusk.",
                        f"In {b} light, {a} feels {c} and far away.",
                        f"Something {c} lives in {a}, {b} and slow."])


def row(r, maker, turns=None):
    turns = turns or (2 if r.random() < 0.2 else 1)
    conv = []
    for _ in range(turns):
        q, a = maker(r)
        conv += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return {"system": r.choice(SYSTEMS), "conversations": conv}


def task_row(r):
    return row(r, lambda rr: rr.choice(TASKS)(rr))


def generate(n, seed, make=task_row, exclude=()):
    r = random.Random(seed)
    seen, out = {canon(x) for x in exclude}, []
    while len(out) < n:
        x = make(r)
        c = canon(x)
        if c not in seen:
            seen.add(c)
            out.append(x)
    return out


def canon(x):
    return json.dumps(x, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def write(path, rows, raw_lines=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for line in raw_lines or [json.dumps(x, ensure_ascii=False) for x in rows]:
            f.write(line + "\n")


def demo(eval_rows):
    d = os.path.join(HERE, "demo")
    on = generate(120, 11, exclude=eval_rows)
    write(os.path.join(d, "on_topic.jsonl"), on)
    write(os.path.join(d, "off_topic.jsonl"), generate(120, 12, lambda r: row(r, off_topic)))
    shuffled = list(on)
    random.Random(13).shuffle(shuffled)
    write(os.path.join(d, "duplicate.jsonl"), shuffled)
    bad = generate(40, 14, exclude=eval_rows + on)
    lines = [json.dumps(x, ensure_ascii=False) for x in bad]
    broken = dict(bad[6])
    broken["conversations"] = [broken["conversations"][1], broken["conversations"][0]] + broken["conversations"][2:]
    lines[6] = json.dumps(broken, ensure_ascii=False)  # line 7: assistant first
    write(os.path.join(d, "malformed.jsonl"), None, lines)
    write(os.path.join(d, "partial.jsonl"), generate(60, 15, exclude=eval_rows + on))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=300)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default=os.path.join(HERE, "data.jsonl"))
    p.add_argument("--demo", action="store_true", help="write the demo miner datasets under eval_data/demo")
    a = p.parse_args()
    rows = generate(a.rows, a.seed)
    if a.demo:
        demo(rows)
    else:
        write(a.out, rows)


if __name__ == "__main__":
    main()

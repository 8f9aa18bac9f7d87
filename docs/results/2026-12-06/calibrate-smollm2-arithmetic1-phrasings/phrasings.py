"""Accuracy by phrasing family of arithmetic:1 from answers.jsonl: `python phrasings.py answers.jsonl`."""
import json
import re
import sys
from collections import defaultdict

from reward_circuits.analysis import binomial_interval

WORDS = r"\b(zero|one|two|three|four|five|six|seven|eight|nine)\b"


def kind(q: str) -> str:
    if re.fullmatch(r"What is \d [+-] \d\?", q):
        return "canonical 'What is a ± b?'"
    if re.search(WORDS, q):
        return "verbal, number words"
    return "other symbolic ('Compute a + b.')" if re.search(r"[+-] \d", q) else "verbal, digits"


groups = defaultdict(list)
for line in open(sys.argv[1]):
    a = json.loads(line)
    groups[kind(a["question"])].append(a["reward"])
print("| phrasing | n | accuracy [95% Wilson] |\n|---|---|---|")
for k, v in sorted(groups.items()):
    i = binomial_interval(int(sum(v)), len(v))
    print(f"| {k} | {i.n} | {i.estimate:.2f} [{i.low:.2f}, {i.high:.2f}] |")

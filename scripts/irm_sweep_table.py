"""Collect the IRM fine-tune sweep points (scripts/irm_finetune_sweep.py outputs) into one JSON with the
admissibility verdict of IrmConfig's stated criterion, and a Markdown table of every point.

    python scripts/irm_sweep_table.py OUT_JSON POINT.json ...

Give the points in the order of the sweep plan stated before they ran: the chosen model is the first
admissible point in that order (never a choice on the IRM result). Points run before a plan existed
(``"planned": false`` in their JSON) are listed but never chosen.
"""

import json
import sys

BAND, KL_MAX, DISTINCT_RATIO = (1.5, 3.0), 0.5, 0.8


def verdict(p: dict) -> list[str]:
    fails = []
    if not BAND[0] <= p["reward_finetuned"] <= BAND[1]:
        fails.append(f"reward {p['reward_finetuned']:.2f} outside [{BAND[0]}, {BAND[1]}]")
    if p["kl_to_base"] > KL_MAX:
        fails.append(f"KL {p['kl_to_base']:.3f} > {KL_MAX}")
    if p["distinct2_finetuned"] < DISTINCT_RATIO * p["distinct2_base"]:
        fails.append(f"distinct-2 {p['distinct2_finetuned']:.3f} < {DISTINCT_RATIO} x base {p['distinct2_base']:.3f}")
    return fails


points = [json.load(open(f)) for f in sys.argv[2:]]
for p in points:
    p.setdefault("finetune_seed", 0)  # points run before the knob existed used the config's seed 0
    p["fails"] = verdict(p)
    p["admissible"] = not p["fails"]
ok = [p for p in points if p["admissible"] and p.get("planned", True)]
chosen = ok[0] if ok else None
out = {"criterion": {"reward_band": BAND, "kl_max_nats_per_token": KL_MAX, "distinct2_min_ratio": DISTINCT_RATIO},
       "chosen": {k: chosen.get(k) for k in ("model", "lr", "beta", "steps", "finetune_seed")} if chosen else None,
       "choice_rule": "the first admissible point in the pre-stated plan order", "points": points}
json.dump(out, open(sys.argv[1], "w"), indent=1)
print("| lr / beta / steps / fine-tune seed | held-out reward (base) | KL to base, nats/token | distinct-2 (base) | fine-tune wall / CPU s | verdict |")
print("|---|---|---|---|---|---|")
for p in points:
    mark = "**" if p is chosen else ""
    print(f"| {mark}{p['lr']:g} / {p['beta']:g} / {p['steps']} / {p.get('finetune_seed', 0)}{mark} | {p['reward_finetuned']:.3f} ({p['reward_base']:.3f}) "
          f"| {p['kl_to_base']:.3f} | {p['distinct2_finetuned']:.3f} ({p['distinct2_base']:.3f}) "
          f"| {p['finetune_wall_s']:.0f} / {p['finetune_cpu_s']:.0f} | {'admissible' if p['admissible'] else '; '.join(p['fails'])} |")
for p in points:
    print(f"lr {p['lr']:g} beta {p['beta']:g} steps {p['steps']}: reward {p['reward_base']:.3f} -> {p['reward_finetuned']:.3f}, "
          f"KL {p['kl_to_base']:.3f}, distinct-2 {p['distinct2_base']:.3f} -> {p['distinct2_finetuned']:.3f}, "
          f"ppl under base {p['perplexity_base']:.1f} -> {p['perplexity_finetuned_under_base']:.1f}, "
          f"wall {p['finetune_wall_s']:.0f} s cpu {p['finetune_cpu_s']:.0f} s: {'ADMISSIBLE' if p['admissible'] else p['fails']}")
print("chosen:", out["chosen"])

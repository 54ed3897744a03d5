"""How many seeds the lecture's main claims need: the power of each experiment's test at its seed count, if the
effect is as large as the runs before this design measured it (3 or 5 seeds, ranges apart).

The power is the fraction of simulated experiments (each side's per-seed values normal with the earlier mean and
standard deviation; divergences binomial with the earlier rate) whose p value, times the experiment's number of
comparisons, is below 0.05: Holm's first, hardest step. A claim that fails it is not shown at that seed count.

    python -m experiments.power
"""

from __future__ import annotations

import dataclasses
import sys

import numpy as np

from experiments import stats


@dataclasses.dataclass(frozen=True)
class Effect:
    claim: str
    experiment: str
    a: tuple  # (mean, std) of the better side, or (rate,) of a count
    b: tuple
    family: int  # comparisons in the experiment's Holm family
    seeds: int  # seeds a side in the cpu preset


EFFECTS = (  # the earlier committed runs (README of 0.4.0): means and standard deviations over seeds
    Effect(
        "gated cells beat the RNN: adding, T = 100, LSTM vs RNN", "long_range", (0.0012, 0.0001), (0.154, 0.006), 18, 6
    ),
    Effect("clipping: runs that diverge, clipped vs unclipped (spiky)", "gradient_clipping", (0.0,), (0.4,), 4, 20),
    Effect(
        "truncated BPTT cannot learn past its window: k = 10 vs full",
        "truncated_bptt",
        (0.0020, 0.0009),
        (0.083, 0.003),
        14,
        10,  # 6 by this table; one full-BPTT run of 6 that never learned made it 10 (README)
    ),
    Effect("reversing the input speeds learning: steps to 95%", "seq2seq", (2233, 231), (4667, 153), 3, 5),
)


def power_of(effect: Effect, seeds: int, trials: int = 400, seed: int = 0) -> float:
    if len(effect.a) == 1:  # a count: Fisher's exact test on binomial draws
        rng = np.random.default_rng(seed)
        hits = 0
        for _ in range(trials):
            events = (int(rng.binomial(seeds, effect.a[0])), int(rng.binomial(seeds, effect.b[0])))
            hits += stats.compare_counts(events, (seeds, seeds), ("a", "b"))["p"] * effect.family < stats.ALPHA
        return hits / trials
    return stats.power(*effect.a, *effect.b, seeds, family=effect.family, trials=trials, seed=seed)


def table(seed_counts=(3, 5, 6, 10, 20)) -> list[dict]:
    return [
        {
            "claim": e.claim,
            "experiment": e.experiment,
            "family": e.family,
            "seeds": e.seeds,
            "power": {n: power_of(e, n) for n in sorted({*seed_counts, e.seeds})},
        }
        for e in EFFECTS
    ]


def main() -> int:
    rows = table()
    counts = sorted({n for r in rows for n in r["power"]})
    print("| claim | comparisons | seeds used | " + " | ".join(f"power at {n}" for n in counts) + " |")
    print("| --- | --- | --- | " + " | ".join("---" for _ in counts) + " |")
    for r in rows:
        cells = " | ".join(f"{r['power'].get(n, float('nan')):.2f}" for n in counts)
        print(f"| {r['claim']} (`{r['experiment']}`) | {r['family']} | {r['seeds']} | {cells} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

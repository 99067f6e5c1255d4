"""Write a history to import: one record per commit, cut from a real run, with a step at one commit.

    python examples/history/step_records.py RECORD.json OUT_DIR [--commits 30] [--step-at 17] [--step 1.15]

Each output record is the real record's cell, labelled `commit=cNN branch=main`,
with its latency samples resampled (seeded) from the real ones — times `--step`
from commit `--step-at` on — and every statistic re-derived from them with the
harness's own `summarize`. `aigcbench import OUT_DIR/*.json` then `aigcbench
history` should name the step's commit; the README shows what it printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
from pathlib import Path

import numpy as np

from aigcbench.bench.record import Record, new_run_id, write_json
from aigcbench.bench.stats import summarize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("record", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--commits", type=int, default=30)
    parser.add_argument("--step-at", type=int, default=17)
    parser.add_argument("--step", type=float, default=1.15)
    args = parser.parse_args()
    import json

    real = Record.from_dict(json.loads(args.record.read_text()))
    samples = np.asarray(real.samples["latency_s"])
    rng = np.random.default_rng(0)
    start = dt.datetime.fromisoformat(real.created_at)
    args.out.mkdir(parents=True, exist_ok=True)
    for commit in range(args.commits):
        factor = args.step if commit >= args.step_at else 1.0
        latencies = (rng.choice(samples, 500) * factor).tolist()
        metrics = dict(real.metrics, latency_s=summarize(latencies).as_dict(),
                       throughput_items_per_s=len(latencies) / sum(latencies))
        labels = {"commit": f"c{commit:02d}", "branch": "main"}
        record = dataclasses.replace(
            real, run_id=new_run_id(), labels=labels, config={**real.config, "labels": labels}, metrics=metrics,
            samples={"latency_s": latencies}, git_commit=labels["commit"],
            created_at=(start + dt.timedelta(hours=commit)).isoformat(timespec="seconds"),
        )
        write_json(record, args.out / f"c{commit:02d}.json")


if __name__ == "__main__":
    main()

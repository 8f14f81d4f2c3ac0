"""Learning benchmark: the autoencoder table, the domain-adaptation table and the PAC-Bayes power curves.

::

    python tools/learn_bench.py                  # every part: tools/results/learn.{json,md} and the figures
    python tools/learn_bench.py --part ae        # one part (ae, amortized, wae, adapt, pacbayes)
    python tools/learn_bench.py --quick          # small sizes, one seed: a smoke run (learn-quick.*)

Each part is a module ``tools/_learn_<part>.py`` with ``run(quick, seeds, out) -> dict`` that trains
what it reports for every seed and returns ``{"title", "markdown", "json"}`` (its figures it writes under
``out`` itself). Parts run one after the other, never in parallel: the machine's cores are shared.
Every table reports mean ± std over the seeds.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "tools" / "results"
PARTS = ("ae", "amortized", "wae", "adapt", "pacbayes")


def main(argv=None) -> int:
    sys.path.insert(0, str(ROOT / "tools"))
    from geom._files import write_text

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", action="append", choices=PARTS, help="run only these parts (repeatable)")
    parser.add_argument("--quick", action="store_true", help="small sizes and one seed")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per configuration (default 3)")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS)
    args = parser.parse_args(argv)
    seeds = [0] if args.quick else list(range(args.seeds))
    args.out.mkdir(parents=True, exist_ok=True)
    parts = args.part or list(PARTS)
    report, sections = {}, []
    for part in parts:
        module = importlib.import_module(f"_learn_{part}")
        start = time.perf_counter()
        result = module.run(args.quick, seeds, args.out)
        result["seconds"] = time.perf_counter() - start
        report[part] = result
        sections.append(f"## {result['title']}\n\n{result['markdown']}\n")
        print(sections[-1], flush=True)
        stem = "learn" + ("-quick" if args.quick else "") + ("" if args.part is None else "-" + "-".join(parts))
        write_text(args.out / f"{stem}.md", "\n".join(sections))
        write_text(args.out / f"{stem}.json", json.dumps(report, indent=1, default=float) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Long fuzz run of every decoder at a boundary of btcpipe: SBE frames, JSON stream messages, bus payloads
(trades, best bid/ask, other messages), REST trade pages and dump archives.

Each decoder gets ``--inputs`` mutated inputs (bit flips, extreme integers over fields, truncation, splicing;
JSON: wrong types, huge numbers, missing keys) from valid seeds (``tests/support/fuzz.py``); every outcome is
decoded, a typed error (the project's error tree) or an untyped exception — which must never happen. Prints one
JSON document; exits 1 if any untyped exception occurred.

    .venv/bin/python bench/fuzz_decoders.py [--inputs 100000] [--seed 1] [--only sbe_frame,json_message]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from support.fuzz import fuzz, targets


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=100_000, help="Mutated inputs per decoder.")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", default="", help="Comma-separated decoder names (default: all).")
    args = parser.parse_args()
    wanted = {n for n in args.only.split(",") if n}
    results = []
    for target in targets():
        if wanted and target.name not in wanted:
            continue
        started = time.perf_counter()
        result = fuzz(target, args.inputs, seed=args.seed).to_dict()
        result["seconds"] = round(time.perf_counter() - started, 1)
        results.append(result)
        print(json.dumps({k: result[k] for k in ("decoder", "inputs", "typed_errors", "untyped_exceptions",
                                                 "seconds")}), file=sys.stderr)
    untyped = sum(r["untyped_exceptions"] for r in results)
    print(json.dumps({"bench": "fuzz_decoders", "inputs_per_decoder": args.inputs, "seed": args.seed,
                      "untyped_exceptions": untyped, "decoders": results,
                      "python": platform.python_version(), "cpus": os.cpu_count()}, indent=1))
    return 1 if untyped else 0


if __name__ == "__main__":
    sys.exit(main())

"""Failover benchmark on the lab: RTO and raw RPO of shard 0 when its primary is killed.

`make bench-failover`. Needs the shard_ha lab converged with local-shard-0 leading. The drill and
what each figure means are in ``unde_tools.patroni_drill.failover`` (molecule/shard_ha runs the same
code); this prints its result as one JSON object. Traffic goes only to lab hosts. Imports
``unde_tools`` from ``tools/`` (PYTHONPATH=tools, which the Makefile exports).
"""

from __future__ import annotations

import argparse
import json
import sys

from unde_tools.patroni_drill import failover


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=150, help="inserts per second (≥ 100)")
    ap.add_argument("--after", type=float, default=40, help="seconds of load after the kill")
    ap.add_argument("--no-switch-back", action="store_true")
    args = ap.parse_args(argv)
    result = failover(rate=args.rate, after_s=args.after, switch_back=not args.no_switch_back)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

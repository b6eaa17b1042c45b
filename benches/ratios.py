"""Print per-item cost and ratios to the anchors from a pytest-benchmark JSON.

    python benches/ratios.py .benchmarks/latest.json

Each bench records ``extra_info["items"]`` (events per call) and anchors mark
themselves with ``extra_info["anchor"]``; every row is compared with every
anchor of its group, using the median (robust on a shared, noisy machine).
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict


def main(path: str) -> None:
    with open(path) as f:
        data = json.load(f)
    groups: dict[str, list[dict]] = defaultdict(list)
    for bench in data["benchmarks"]:
        groups[bench["group"] or ""].append(bench)
    for group, benches in groups.items():
        print(f"\n## {group}")
        anchors = [b for b in benches if b["extra_info"].get("anchor")]
        for b in benches:
            items = b["extra_info"].get("items", 1)
            median = b["stats"]["median"]
            per = median / items
            line = f"  {b['name']:<42} {per * 1e9:10.2f} ns/item  {items / median:14,.0f} items/s"
            for a in anchors:
                if a is not b:
                    ratio = (a["stats"]["median"] / a["extra_info"].get("items", 1)) / per
                    name = a["extra_info"]["anchor"]
                    line += (
                        f"  {ratio:6.2f}x faster than {name}" if ratio >= 1
                        else f"  {1 / ratio:6.2f}x slower than {name}"
                    )
            print(line)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".benchmarks/latest.json")

"""Copy the tables in benchmarks/results/*.md into README.md between
``<!-- results:NAME -->`` and ``<!-- /results:NAME -->`` markers (no hand-typed numbers).

    python benchmarks/report.py
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"


def main() -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    for table in sorted(RESULTS.glob("*.md")):
        name = table.stem
        pattern = re.compile(rf"(<!-- results:{name} -->\n).*?(<!-- /results:{name} -->)", re.S)
        if pattern.search(text):
            text = pattern.sub(lambda m: m.group(1) + table.read_text().strip() + "\n" + m.group(2), text)
            print(f"README: {name} <- {table.relative_to(ROOT)}")
    readme.write_text(text)


if __name__ == "__main__":
    main()

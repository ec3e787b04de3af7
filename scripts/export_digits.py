"""Export the UCI handwritten digits (scikit-learn's bundled copy) into the train/validation/test CSVs in data/digits.

Usage: ``python -m scripts.export_digits PATH/TO/sklearn/datasets/data/digits.csv.gz [OUT_DIR]``. The split is
stratified by class (70 % / 15 % / 15 %) and a fixed function of the file, so running it again gives the same files.
"""

from __future__ import annotations

import csv
import gzip
import random
import sys
from pathlib import Path

SPLITS = (("train", 0.70), ("validation", 0.15), ("test", 0.15))


def export(source: Path, out_dir: Path, seed: int = 0) -> dict[str, int]:
    """Write one CSV per split (header ``pixel_0..pixel_63,label``); returns the instance count of each."""
    with gzip.open(source, "rt") as file:
        rows = [[int(value) for value in line.split(",")] for line in file if line.strip()]
    by_class: dict[int, list[list[int]]] = {}
    for row in rows:
        by_class.setdefault(row[-1], []).append(row)
    shuffler = random.Random(seed)
    split_rows: dict[str, list[list[int]]] = {name: [] for name, _ in SPLITS}
    for label in sorted(by_class):
        members = by_class[label]
        shuffler.shuffle(members)
        start = 0
        for index, (name, share) in enumerate(SPLITS):
            end = len(members) if index == len(SPLITS) - 1 else start + round(share * len(members))
            split_rows[name].extend(members[start:end])
            start = end
    out_dir.mkdir(parents=True, exist_ok=True)
    header = [f"pixel_{index}" for index in range(len(rows[0]) - 1)] + ["label"]
    for name, members in split_rows.items():
        shuffler.shuffle(members)
        with open(out_dir / f"{name}.csv", "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(header)
            writer.writerows(members)
    return {name: len(members) for name, members in split_rows.items()}


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    counts = export(Path(sys.argv[1]), Path(sys.argv[2] if len(sys.argv) == 3 else "data/digits"))
    print(", ".join(f"{name}: {count}" for name, count in counts.items()))

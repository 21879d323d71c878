#!/usr/bin/env python3
"""Prints dinoscope ÷ PyTorch for every figure both sides measured (rows matched by name; a
dinoscope "(f16)" or "(mixed)" row is set against PyTorch's "(bf16)" and fp32 rows of the same
work, a "matmul f16 MxNxK (kernel)" row against PyTorch's bf16 product of that size, and a
"matmul MxNxK (plan)" row of `--tiles` or `--general` against PyTorch's fp32 product, and any
other "WORK (variant)" row, such as "(4 columns a lane)", against PyTorch's WORK row).
Then each side's memory-bound rows (GB/s) as a share of its own copy row, the bandwidth a plain
copy reaches on the same device in the same run.
Usage: ratio.py DINOSCOPE.json [DINOSCOPE2.json ...] -- TORCH.json [TORCH_BF16.json]"""

import json
import sys


def load(paths):
    rows = {}
    for p in paths:
        try:
            with open(p) as f:
                for r in json.load(f):
                    rows[r["name"]] = r
        except (OSError, ValueError) as e:  # a part that failed or ran out of time: its rows are left out
            print(f"ratio.py: skipping {p}: {e}", file=sys.stderr)
    return rows


def main():
    if "--" not in sys.argv:
        sys.exit(__doc__)
    cut = sys.argv.index("--")
    ours, theirs = load(sys.argv[1:cut]), load(sys.argv[cut + 1:])

    def mib(r):
        return f"{r['peak_bytes'] / 2**30:.2f} GiB" if r.get("peak_bytes") else ""

    print(f"| work | dinoscope | PyTorch | ratio (dinoscope ÷ PyTorch) | memory (dinoscope / PyTorch) |")
    print("|---|---|---|---|---|")
    for name, o in ours.items():
        base = name.removesuffix(" (f16)").removesuffix(" (mixed)")
        candidates = [base + " (bf16)", base]
        if name.startswith("matmul f16 "):
            base = "matmul " + name.split()[2]
            candidates = [base + " (bf16)"]
        elif name.startswith("matmul ") and name.endswith(")"):  # one plan (--tiles, --general)
            base = "matmul " + name.split()[1]
            candidates = [base]
        elif name.endswith(")") and " (" in base:  # a kernel variant: "(4 columns a lane)", …
            base = name[: name.rindex(" (")]
            candidates = [base]
        for their_name in candidates:
            t = theirs.get(their_name)
            if t is None:
                continue
            label = name if their_name == name else f"{name} vs PyTorch {their_name.removeprefix(base).strip() or 'fp32'}"
            ratio = o["rate"] / t["rate"] if t["rate"] else float("nan")
            mem = f"{mib(o)} / {mib(t)}" if o.get("peak_bytes") or t.get("peak_bytes") else ""
            print(f"| {label} | {o['rate']:.1f} {o['unit']} | {t['rate']:.1f} {t['unit']} | "
                  f"{ratio:.3f}× | {mem} |")

    bandwidth_shares(ours, theirs)


def bandwidth_shares(ours, theirs):
    def copy_rate(rows):
        return next((r["rate"] for n, r in rows.items() if n.startswith("copy ") and "(" not in n), None)

    roof, their_roof = copy_rate(ours), copy_rate(theirs)
    if not roof:
        return
    print()
    print(f"| memory-bound work | dinoscope | share of its copy ({roof:.0f} GB/s) | PyTorch's share of its copy |")
    print("|---|---|---|---|")
    for name, o in ours.items():
        if o["unit"] != "GB/s" or name.startswith("copy "):
            continue
        t = theirs.get(name)
        their = f"{t['rate'] / their_roof:.0%}" if t and their_roof else ""
        print(f"| {name} | {o['rate']:.1f} GB/s | {o['rate'] / roof:.0%} | {their} |")


if __name__ == "__main__":
    main()

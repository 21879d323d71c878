#!/usr/bin/env python3
"""Tabulates what a GPU compiler made of each pipeline, from a dinoscope log.

The log is stderr and stdout of a dinoscope command run with RUST_LOG=dinoscope=debug (which
names each pipeline as it is compiled) on a Mesa driver that prints its compiler's statistics:
RADV with RADV_DEBUG=shaderstats (AMD's ACO compiler) or NVK with NAK_DEBUG=print (NAK, for
NVIDIA). bench/shader_stats.sh runs both without a GPU, through Mesa's DRM shims.

    python3 bench/shader_stats.py LOG [--only REGEX] [--json OUT] [--check]

--check exits 1 when a pipeline spills registers to memory (or, under NAK, keeps an array in
local memory), unless it is one of KNOWN_SPILLS: the kernels made for CPU drivers, and those a
GPU with subgroups takes only when a tuning cache chose them.

Columns, RADV: VGPRs, spilled VGPRs, scratch bytes, waves per SIMD, instructions, LDS bytes.
NAK: GPRs, spills to memory and to other registers, warps per SM, instructions, static cycles,
local memory bytes. A pipeline compiled twice (same name, types and constants) is listed once.
"""
import json
import re
import sys

NAME = re.compile(r"compiling pipeline (\S+) S=(\w+) O=(\w+) (\[.*\])")
RADV = {
    "VGPRs": "regs",
    "Spilled VGPRs": "spills",
    "Scratch size": "scratch",
    "Subgroups per SIMD": "waves",
    "Instructions": "instrs",
    "LDS size": "shared",
}
NAK = {
    "Num GPRs": "regs",
    "Spills to mem": "spills",
    "Spills to reg": "spills_reg",
    "Max warps/SM": "waves",
    "Instruction count": "instrs",
    "Static cycle count": "cycles",
    "SLM size": "scratch",
}


# Pipelines that may spill, with why (regular expressions on the table's pipeline labels).
KNOWN_SPILLS = [
    # One invocation a query or key holds 192 or 256 floats of arrays; GPUs take the pairs
    # (attention_pairs_u with subgroups, attention_pairs_wg_u without) unless a tuning cache
    # chose these.
    r"^attention(_u)?::attention_backward_(dq|dkv) ",
    # One key at a time, the scores in an array indexed by the key: the CPU drivers' layout.
    r"^attention(_sg)?::attention_forward ",
    # The general kernel's 128×128 tile (64 accumulators in an array): GPUs take its 64×64 tile.
    r"^matmul(_sg)?::matmul .*BM=128",
]


def spills(r):
    return r.get("spills", 0) > 0 or r.get("scratch", 0) > 0


def label(m):
    """shader::entry, the storage types where not f32, and the override constants."""
    name, s, o, consts = m.groups()
    types = "" if (s, o) == ("F32", "F32") else f" {s.lower()}/{o.lower()}"
    consts = re.findall(r'\("(\w+)", ([\d.e+-]+)\)', consts)
    shown = ",".join(f"{k}={float(v):g}" for k, v in consts)
    return f"{name}{types}" + (f" [{shown}]" if shown else "")


def parse(lines):
    rows, order, current, driver = {}, [], None, None
    for line in lines:
        m = NAME.search(line)
        if m:
            current = label(m)
            if current not in rows:
                rows[current] = {}
                order.append(current)
            continue
        if current is None or ":" not in line:
            continue
        key, _, value = line.strip().partition(":")
        for table, name in ((RADV, "radv"), (NAK, "nak")):
            if key in table:
                driver = name
                try:
                    rows[current].setdefault(table[key], int(value.split()[0]))
                except (ValueError, IndexError):
                    pass
    return driver, [(name, rows[name]) for name in order if rows[name]]


def main():
    args = sys.argv[1:]
    if not args or args[0].startswith("-"):
        sys.exit(__doc__)
    only = None
    out = None
    if "--only" in args:
        only = re.compile(args[args.index("--only") + 1])
    if "--json" in args:
        out = args[args.index("--json") + 1]
    with open(args[0], errors="replace") as f:
        driver, rows = parse(f)
    if only:
        rows = [(n, r) for n, r in rows if only.search(n)]
    if not rows:
        sys.exit(f"{args[0]}: no pipeline statistics (was RUST_LOG=dinoscope=debug set, and the driver's statistics flag?)")
    if driver == "radv":
        cols = [("VGPRs", "regs"), ("spilled", "spills"), ("scratch B", "scratch"),
                ("waves/SIMD", "waves"), ("instrs", "instrs"), ("LDS B", "shared")]
    else:
        cols = [("GPRs", "regs"), ("spills mem", "spills"), ("spills reg", "spills_reg"),
                ("warps/SM", "waves"), ("instrs", "instrs"), ("static cycles", "cycles"),
                ("local B", "scratch")]
    print("| pipeline | " + " | ".join(c for c, _ in cols) + " |")
    print("|---|" + "---:|" * len(cols))
    for name, r in rows:
        print(f"| {name} | " + " | ".join(str(r.get(k, "")) for _, k in cols) + " |")
    if out:
        with open(out, "w") as f:
            json.dump({"driver": driver, "pipelines": dict(rows)}, f, indent=1)
    if "--check" in args:
        bad = [n for n, r in rows if spills(r) and not any(re.search(k, n) for k in KNOWN_SPILLS)]
        if bad:
            sys.exit(f"{args[0]}: {len(bad)} pipeline(s) spill under {driver}: " + "; ".join(bad))


if __name__ == "__main__":
    main()

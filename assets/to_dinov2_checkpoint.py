#!/usr/bin/env python3
"""Turns a dinoscope export (weights.safetensors, config.yaml) into the files the official
facebookresearch/dinov2 code reads:

* dinoscope_checkpoint.pth: {"model": SSLMetaArch state dict, "iteration": N}. config.yaml names
  it as MODEL.WEIGHTS, so `python dinov2/train/train.py --config-file config.yaml` starts from
  these weights and continues the schedules where the run stopped (the AdamW moments restart).
* teacher_checkpoint.pth: {"teacher": {"backbone.*", "dino_head.*", ...}}, what the evaluation
  scripts take as --pretrained-weights (dinov2/eval/knn.py, linear.py).

Usage: python to_dinov2_checkpoint.py [EXPORT_DIR]   (needs torch and safetensors)
"""
import os
import sys

import torch
from safetensors import safe_open


def main():
    folder = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(folder, "weights.safetensors")
    model = {}
    with safe_open(path, framework="pt") as f:
        iteration = int((f.metadata() or {}).get("iteration", "0"))
        for name in f.keys():
            model[name] = f.get_tensor(name)
    teacher = {k[len("teacher."):]: v for k, v in model.items() if k.startswith("teacher.")}
    for out, obj in [
        ("dinoscope_checkpoint.pth", {"model": model, "iteration": iteration - 1}),
        ("teacher_checkpoint.pth", {"teacher": teacher}),
    ]:
        target = os.path.join(folder, out)
        if os.path.exists(target):
            sys.exit(f"{target} exists; remove it first")
        torch.save(obj, target)
        print(f"wrote {target}")


if __name__ == "__main__":
    main()

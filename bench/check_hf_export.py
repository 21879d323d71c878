"""Checks a `dinoscope export RUN --to hf` folder against Hugging Face transformers.

1. `AutoModel.from_pretrained(FOLDER)` builds the model class the export's config.json names
   (Dinov2Model, Dinov2WithRegistersModel or DINOv3ViTModel) and loads every tensor of its
   model.safetensors, with no tensor missing, unexpected or mismatched.
2. Its CLS token and mean patch token on one image match `dinoscope embed` with the run's
   `teacher_backbone.safetensors` on the same image.

Usage (torch, transformers, safetensors, pillow; the image's sides a multiple of the patch and
equal to --size, so dinoscope neither resizes nor crops it):

    dinoscope export RUN --to hf
    dinoscope embed --weights RUN/teacher_backbone.safetensors --size 28 -o feats.safetensors IMAGE
    python bench/check_hf_export.py --export RUN/export-hf --image IMAGE --features feats.safetensors

Exits with status 1 when the load is not exact or the features differ by more than --tol.
"""

import argparse
import sys

import numpy as np
import torch
from PIL import Image
from safetensors.numpy import load_file
from transformers import AutoModel


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--export", required=True, help="the export folder (RUN/export-hf)")
    ap.add_argument("--image", required=True, help="the image given to dinoscope embed")
    ap.add_argument("--features", required=True, help="dinoscope embed's output")
    ap.add_argument("--tol", type=float, default=1e-4, help="largest absolute difference")
    a = ap.parse_args()

    model, info = AutoModel.from_pretrained(a.export, output_loading_info=True)
    problems = {k: v for k, v in info.items() if v}
    print(f"{type(model).__name__}: {sum(p.numel() for p in model.parameters())} parameters")
    if problems:
        print(f"not an exact load: {problems}")
        sys.exit(1)
    print("every tensor loads: none missing, unexpected or mismatched")
    model.eval()

    rgb = np.asarray(Image.open(a.image).convert("RGB"), dtype=np.float32) / 255.0
    mean = np.array([0.485, 0.456, 0.406], np.float32)
    std = np.array([0.229, 0.224, 0.225], np.float32)
    x = torch.from_numpy(((rgb - mean) / std).transpose(2, 0, 1)[None].copy())
    with torch.no_grad():
        tokens = model(pixel_values=x).last_hidden_state[0].numpy()
    skip = 1 + getattr(model.config, "num_register_tokens", 0)
    theirs = {"cls": tokens[0], "mean_patch": tokens[skip:].mean(0)}
    ours = load_file(a.features)
    failed = False
    for name, want in theirs.items():
        got = ours[name].reshape(-1)
        err = float(np.abs(want - got).max())
        print(
            f"{name}: largest |transformers − dinoscope| {err:.3g} "
            f"(values up to {np.abs(want).max():.3g})"
        )
        failed |= not err <= a.tol
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

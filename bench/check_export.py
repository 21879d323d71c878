"""Checks a `dinoscope export RUN --to dinov2` against the official DINOv2 code.

1. The official trainer's model (`SSLMetaArch`, built from the official default config merged
   with the export's config.yaml) loads `dinoscope_checkpoint.pth` with strict=True: every
   student and teacher tensor of backbone and heads, and nothing else.
2. The official evaluation backbone (`build_model(cfg.student, only_teacher=True)`) loads the
   teacher of `teacher_checkpoint.pth` with strict=True.
3. Its CLS token and mean patch token on one image match `dinoscope embed` with the run's
   `teacher_backbone.safetensors` on the same image.

Usage (torch, torchvision, omegaconf, fvcore, safetensors, pillow; a checkout of
facebookresearch/dinov2; the image's sides a multiple of the patch, so neither side resizes):

    dinoscope export RUN --to dinov2
    python RUN/export-dinov2/to_dinov2_checkpoint.py
    dinoscope embed --weights RUN/teacher_backbone.safetensors -o feats.safetensors IMAGE
    python bench/check_export.py --dinov2 DINOV2_CHECKOUT --export RUN/export-dinov2 \
        --image IMAGE --features feats.safetensors

Exits with status 1 when a load is not exact or the features differ by more than --tol.
"""

import argparse
import sys
import types

import numpy as np
import torch
from PIL import Image
from safetensors.numpy import load_file


def official_modules(checkout):
    """The official trainer's modules. Its package asserts xFormers at import, which only its
    training forward (block-diagonal attention masks) calls; building and loading run without
    it, so a stand-in module satisfies the import on a machine without CUDA."""
    sys.path.insert(0, checkout)
    try:
        import xformers.ops  # noqa: F401
    except ImportError:
        ops = types.ModuleType("xformers.ops")
        ops.fmha = None
        root = types.ModuleType("xformers")
        root.ops = ops
        sys.modules["xformers"] = root
        sys.modules["xformers.ops"] = ops
    from omegaconf import OmegaConf
    from dinov2.configs import dinov2_default_config
    from dinov2.models import build_model
    from dinov2.train.ssl_meta_arch import SSLMetaArch

    return OmegaConf, dinov2_default_config, build_model, SSLMetaArch


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dinov2", required=True, help="a checkout of facebookresearch/dinov2")
    ap.add_argument("--export", required=True, help="the export folder (RUN/export-dinov2)")
    ap.add_argument("--image", required=True, help="the image given to dinoscope embed")
    ap.add_argument("--features", required=True, help="dinoscope embed's output")
    ap.add_argument("--tol", type=float, default=1e-4, help="largest absolute difference")
    a = ap.parse_args()
    OmegaConf, default, build_model, SSLMetaArch = official_modules(a.dinov2)
    cfg = OmegaConf.merge(OmegaConf.create(default), OmegaConf.load(f"{a.export}/config.yaml"))
    failed = False

    ck = torch.load(f"{a.export}/dinoscope_checkpoint.pth", map_location="cpu")
    try:
        SSLMetaArch(cfg).load_state_dict(ck["model"], strict=True)
        print(f"SSLMetaArch: all {len(ck['model'])} tensors load (strict), iteration {ck['iteration']}")
    except RuntimeError as e:
        print(f"SSLMetaArch: {e}")
        failed = True

    model, _ = build_model(cfg.student, only_teacher=True, img_size=cfg.crops.global_crops_size)
    teacher = torch.load(f"{a.export}/teacher_checkpoint.pth", map_location="cpu")["teacher"]
    backbone = {k[len("backbone."):]: v for k, v in teacher.items() if k.startswith("backbone.")}
    try:
        model.load_state_dict(backbone, strict=True)
        print(f"evaluation backbone: all {len(backbone)} tensors load (strict)")
    except RuntimeError as e:
        print(f"evaluation backbone: {e}")
        sys.exit(1)
    gammas = [float(v.abs().mean()) for k, v in backbone.items() if k.endswith("ls1.gamma")]
    if gammas:
        # At LayerScale's initial 1e-5 the blocks hardly reach the output, and a wrong block
        # tensor would not show in the features.
        print(f"mean |ls1.gamma| over blocks: {min(gammas):.3g} … {max(gammas):.3g}")

    model.eval()
    rgb = np.asarray(Image.open(a.image).convert("RGB"), dtype=np.float32) / 255.0
    mean = np.array([0.485, 0.456, 0.406], np.float32)
    std = np.array([0.229, 0.224, 0.225], np.float32)
    x = torch.from_numpy(((rgb - mean) / std).transpose(2, 0, 1)[None].copy())
    with torch.no_grad():
        f = model.forward_features(x)
    ours = load_file(a.features)
    theirs = {
        "cls": f["x_norm_clstoken"].numpy(),
        "mean_patch": f["x_norm_patchtokens"].mean(1).numpy(),
    }
    for name, want in theirs.items():
        got = ours[name]
        err = float(np.abs(want - got).max())
        print(f"{name}: largest |official − dinoscope| {err:.3g} (values up to {np.abs(want).max():.3g})")
        failed |= not err <= a.tol
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

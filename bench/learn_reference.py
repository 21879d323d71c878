#!/usr/bin/env python3
"""A PyTorch twin of dinoscope's self-supervised training recipe, for recipe exploration on CPU.

dinoscope trains on a CPU Vulkan driver at about 1.2 s/step, too slow to try many recipes. This
script runs the same recipe in eager PyTorch (one thread, tens of ms per step at debug size) so
variants can be compared quickly; the defaults are the `debug` preset
(assets/configs/train_debug.ron):

- data: the bundled Fashion-MNIST subset (assets/fashion_mnist, 3000 train / 1000 test images),
  epochs of shuffled batches, last partial batch dropped;
- augmentation (src/data/augment.rs), vectorised over the batch: RandomResizedCrop boxes as
  torchvision draws them, resized with the `image` crate's Catmull-Rom filter (as separable
  per-image weight matrices), 8-bit rounding, flip, ColorJitter (on grey pictures only
  brightness and contrast act, in random order), solarize on global crop 2, ImageNet
  normalisation of the grey value replicated to 3 channels;
- iBOT block masks (src/data/masks.rs) on half of the 2B global crops;
- model: pre-norm ViT (LN eps 1e-6, qkv bias, exact GELU, learned positions resized bicubically
  for other grids, optional LayerScale), DINO head with a weight-normalised prototype layer
  shared with iBOT, FanIn head init (src/train/init.rs);
- step (src/train/trainer/step.rs): teacher EMA on the unmasked globals, Sinkhorn-Knopp (3
  iterations) or centering targets, DINO loss of each student crop against the other global
  teacher crop (locals against both), iBOT on the masked patches, KoLeo on the student's global
  CLS per crop, per-module gradient clipping, AdamW with layer-wise lr decay, patch-embedding lr
  multiplier and no decay on biases and norms, cosine schedules as src/train/config.rs;
- evaluation (src/train/knn.rs, run.rs): the TEACHER backbone's L2-normalised final CLS token on
  the eval view (resize 28 -> 32, centre 28 crop), weighted k-NN (k = 20, T = 0.07), first 2000
  training images against the 1000 test images.

Usage:
  python3 bench/learn_reference.py                          # the debug preset, 600 steps
  python3 bench/learn_reference.py --raw                    # raw-pixel k-NN only
  python3 bench/learn_reference.py --raw --data /usr/share/datasets/fashion-mnist --knn-train 0
                                    # raw pixels on the full set, 60000 -> 10000
  python3 bench/learn_reference.py --steps 1200 --n-local 4 --json /tmp/learn/local4.json
Run with --help for every knob.
"""

import argparse
import copy
import gzip
import json
import math
import os
import random
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "assets", "fashion_mnist")
MEAN = torch.tensor([0.485, 0.456, 0.406])
STD = torch.tensor([0.229, 0.224, 0.225])


# ----------------------------------------------------------------------------- data

def read_idx(name):
    with gzip.open(os.path.join(DATA, name), "rb") as f:
        raw = f.read()
    magic = int.from_bytes(raw[0:4], "big")
    ndim = magic & 0xFF
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    return torch.from_numpy(arr.reshape(dims).copy())


def load_data():
    return (read_idx("train-images-idx3-ubyte.gz").float(),
            read_idx("train-labels-idx1-ubyte.gz").long(),
            read_idx("t10k-images-idx3-ubyte.gz").float(),
            read_idx("t10k-labels-idx1-ubyte.gz").long())


def catmull_rom(x):
    a = x.abs()
    near = 1.5 * a ** 3 - 2.5 * a ** 2 + 1.0
    far = -0.5 * a ** 3 + 2.5 * a ** 2 - 4.0 * a + 2.0
    return torch.where(a < 1.0, near, torch.where(a < 2.0, far, torch.zeros_like(a)))


def resize_matrix(start, length, out, insize):
    """Per-image weights [B, out, insize] of the `image` crate's Catmull-Rom resize of the window
    [start, start + length) of an axis to `out` samples (support widened when shrinking, taps
    clamped to the window, weights normalised)."""
    length = length.float()
    start = start.float()
    ratio = length / out
    sratio = ratio.clamp(min=1.0)
    support = 2.0 * sratio
    o = torch.arange(out, dtype=torch.float32)
    inx = (o[None, :] + 0.5) * ratio[:, None]
    left = torch.floor(inx - support[:, None])
    left = torch.maximum(torch.zeros_like(left), torch.minimum(left, (length - 1)[:, None]))
    right = torch.ceil(inx + support[:, None])
    right = torch.maximum(left + 1, torch.minimum(right, length[:, None]))
    centre = inx - 0.5
    rel = torch.arange(insize, dtype=torch.float32)[None, None, :] - start[:, None, None]
    w = catmull_rom((rel - centre[:, :, None]) / sratio[:, None, None])
    inside = (rel >= left[:, :, None]) & (rel < right[:, :, None])
    w = w * inside
    return w / w.sum(-1, keepdim=True)


def crop_boxes(n, side, scale, ratio, gen):
    """torchvision RandomResizedCrop windows on a side×side picture: (top, left, h, w) [n]."""
    area = float(side * side)
    tries = 10
    a = area * (scale[0] + (scale[1] - scale[0]) * torch.rand(n, tries, generator=gen))
    lr = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * torch.rand(
        n, tries, generator=gen)
    asp = torch.exp(lr)
    w = torch.round(torch.sqrt(a * asp))
    h = torch.round(torch.sqrt(a / asp))
    ok = (w > 0) & (w <= side) & (h > 0) & (h <= side)
    first = torch.argmax(ok.int(), dim=1)
    any_ok = ok.any(dim=1)
    idx = torch.arange(n)
    w = torch.where(any_ok, w[idx, first], torch.full((n,), float(side)))
    h = torch.where(any_ok, h[idx, first], torch.full((n,), float(side)))
    top = torch.floor(torch.rand(n, generator=gen) * (side - h + 1)).clamp(max=side - h)
    left = torch.floor(torch.rand(n, generator=gen) * (side - w + 1)).clamp(max=side - w)
    return top, left, h, w


def augment(imgs, size, scale, a, gen, solarize_p):
    """One augmented crop of each grey picture imgs [n, S, S] (0..255): [n, 3, size, size]."""
    n, side = imgs.shape[0], imgs.shape[-1]
    top, left, h, w = crop_boxes(n, side, scale, a.ratio, gen)
    wy = resize_matrix(top, h, size, side)
    wx = resize_matrix(left, w, size, side)
    x = torch.bmm(torch.bmm(wy, imgs), wx.transpose(1, 2))
    x = torch.round(x).clamp(0, 255)
    flip = torch.rand(n, generator=gen) < a.flip_p
    x = torch.where(flip[:, None, None], x.flip(-1), x)
    if a.jitter_p > 0:
        jit = torch.rand(n, generator=gen) < a.jitter_p
        fb = (1 - a.brightness) + 2 * a.brightness * torch.rand(n, generator=gen)
        fc = (1 - a.contrast) + 2 * a.contrast * torch.rand(n, generator=gen)
        b_first = torch.rand(n, generator=gen) < 0.5

        def bright(v):
            return torch.floor((v * fb[:, None, None]).clamp(0, 255))

        def contrast(v):
            m = torch.floor(v.mean(dim=(1, 2)) + 0.5)[:, None, None]
            return torch.floor((m + fc[:, None, None] * (v - m)).clamp(0, 255))

        bc = contrast(bright(x))
        cb = bright(contrast(x))
        y = torch.where(b_first[:, None, None], bc, cb)
        x = torch.where(jit[:, None, None], y, x)
    if solarize_p > 0:
        sol = torch.rand(n, generator=gen) < solarize_p
        x = torch.where(sol[:, None, None] & (x >= 128), 255 - x, x)
    x = x / 255.0
    return (x[:, None] - MEAN[None, :, None, None]) / STD[None, :, None, None]


def eval_views(imgs, size):
    """dinoscope's eval_view: shorter side to round(size·256/224) (Catmull-Rom), centre crop."""
    n, side = imgs.shape[0], imgs.shape[-1]
    target = round(size * 256 / 224)
    if target != side:
        m = resize_matrix(torch.zeros(n), torch.full((n,), side), target, side)
        imgs = torch.round(torch.bmm(torch.bmm(m, imgs), m.transpose(1, 2))).clamp(0, 255)
    diff = target - size
    half = diff // 2
    off = half + 1 if (diff % 2 == 1 and half % 2 == 1) else half
    x = imgs[:, off:off + size, off:off + size] / 255.0
    return (x[:, None] - MEAN[None, :, None, None]) / STD[None, :, None, None]


class MaskGen:
    """DINOv2's block MaskingGenerator and the collate's mask assignment (src/data/masks.rs)."""

    def __init__(self, gh, gw, prob, ratio, seed):
        self.gh, self.gw, self.prob, self.ratio = gh, gw, prob, ratio
        self.max_block = 0.5 * gh * gw
        self.rng = random.Random(seed)

    def one(self, target):
        m = np.zeros((self.gh, self.gw), dtype=bool)
        count = 0
        while count < target:
            allowed = min(float(target - count), self.max_block)
            delta = 0
            for _ in range(10):
                area = self.rng.uniform(4.0, allowed)
                asp = math.exp(self.rng.uniform(math.log(0.3), math.log(1 / 0.3)))
                h = int(round(math.sqrt(area * asp)))
                w = int(round(math.sqrt(area / asp)))
                if w < self.gw and h < self.gh:
                    t = self.rng.randint(0, self.gh - h)
                    l = self.rng.randint(0, self.gw - w)
                    new = h * w - int(m[t:t + h, l:l + w].sum())
                    if 0 < new <= allowed:
                        m[t:t + h, l:l + w] = True
                        delta += new
                    if delta > 0:
                        break
            if delta == 0:
                break
            count += delta
        return m.reshape(-1)

    def batch(self, n_crops):
        n = self.gh * self.gw
        k = int(math.floor(n_crops * self.prob))
        bins = np.linspace(self.ratio[0], self.ratio[1], k + 1)
        out = []
        for i in range(k):
            frac = self.rng.uniform(bins[i], bins[i + 1])
            out.append(self.one(min(int(n * frac), n)))
        out += [np.zeros(n, dtype=bool)] * (n_crops - k)
        self.rng.shuffle(out)
        return torch.from_numpy(np.stack(out))


# ----------------------------------------------------------------------------- model

class Block(nn.Module):
    def __init__(self, dim, heads, mlp, ls):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.fc1 = nn.Linear(dim, mlp)
        self.fc2 = nn.Linear(mlp, dim)
        self.gamma1 = nn.Parameter(torch.full((dim,), ls)) if ls > 0 else None
        self.gamma2 = nn.Parameter(torch.full((dim,), ls)) if ls > 0 else None

    def forward(self, x, dp=None):
        b, n, d = x.shape
        qkv = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, d // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)
        a = self.proj(a)
        if self.gamma1 is not None:
            a = a * self.gamma1
        if dp is not None:
            a = a * dp[0][:, None, None]
        x = x + a
        m = self.fc2(F.gelu(self.fc1(self.norm2(x))))
        if self.gamma2 is not None:
            m = m * self.gamma2
        if dp is not None:
            m = m * dp[1][:, None, None]
        return x + m


class ViT(nn.Module):
    def __init__(self, dim, depth, heads, mlp, patch, pos_grid, ls):
        super().__init__()
        self.patch, self.pos_grid, self.dim = patch, pos_grid, dim
        self.patch_embed = nn.Conv2d(3, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 1e-6)
        self.mask_token = nn.Parameter(torch.zeros(1, dim))
        self.pos_embed = nn.Parameter(torch.empty(1, 1 + pos_grid * pos_grid, dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp, ls) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        for name, mod in self.named_modules():
            if isinstance(mod, nn.Linear):
                nn.init.trunc_normal_(mod.weight, std=0.02)
                nn.init.zeros_(mod.bias)
        fan = 3 * patch * patch
        nn.init.uniform_(self.patch_embed.weight, -1 / math.sqrt(fan), 1 / math.sqrt(fan))
        nn.init.uniform_(self.patch_embed.bias, -1 / math.sqrt(fan), 1 / math.sqrt(fan))

    def positions(self, gh, gw):
        m = self.pos_grid
        if gh == m and gw == m:
            return self.pos_embed
        grid = self.pos_embed[:, 1:].reshape(1, m, m, self.dim).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(gh, gw), mode="bicubic", align_corners=False)
        grid = grid.permute(0, 2, 3, 1).reshape(1, gh * gw, self.dim)
        return torch.cat([self.pos_embed[:, :1], grid], dim=1)

    def forward(self, x, mask=None, drop_path=0.0):
        b = x.shape[0]
        p = self.patch_embed(x)
        gh, gw = p.shape[-2:]
        p = p.flatten(2).transpose(1, 2)
        if mask is not None:
            p = torch.where(mask[:, :, None], self.mask_token.to(p.dtype)[None], p)
        x = torch.cat([self.cls_token.expand(b, -1, -1), p], dim=1) + self.positions(gh, gw)
        for blk in self.blocks:
            dp = None
            if drop_path > 0 and self.training:
                keep = 1 - drop_path
                dp = [(torch.rand(b) < keep).float() / keep for _ in range(2)]
            x = blk(x, dp)
        return self.norm(x)


class Head(nn.Module):
    def __init__(self, dim, hidden, bottleneck, k, init):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, hidden),
                                 nn.GELU(), nn.Linear(hidden, bottleneck))
        self.weight_g = nn.Parameter(torch.ones(k, 1))
        self.weight_v = nn.Parameter(torch.empty(k, bottleneck))
        bound = 1 / math.sqrt(bottleneck)
        nn.init.uniform_(self.weight_v, -bound, bound)
        for i, layer in ((0, self.mlp[0]), (2, self.mlp[2]), (4, self.mlp[4])):
            if init == "fanin":
                gain = 1.0 if i == 4 else 2.0
                nn.init.normal_(layer.weight, std=math.sqrt(gain / layer.weight.shape[1]))
            else:
                nn.init.trunc_normal_(layer.weight, std=0.02)
            nn.init.zeros_(layer.bias)

    def forward(self, x):
        z = F.normalize(self.mlp(x), dim=-1, eps=1e-12)
        w = self.weight_g * self.weight_v / self.weight_v.norm(dim=1, keepdim=True)
        return z @ w.t()


class Net(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.backbone = ViT(a.dim, a.depth, a.heads, a.mlp, a.patch, a.pos_grid, a.layerscale)
        self.head = Head(a.dim, a.head_hidden, a.bottleneck, a.prototypes, a.head_init)


# ----------------------------------------------------------------------------- losses

def sinkhorn(logits, temp, iters=3):
    q = logits / temp
    n, k = q.shape
    for _ in range(iters):
        q = q - torch.logsumexp(q, dim=0, keepdim=True) - math.log(k)
        q = q - torch.logsumexp(q, dim=1, keepdim=True) - math.log(n)
    return torch.exp(q + math.log(n))


class Targets:
    def __init__(self, kind, k):
        self.kind = kind
        self.center = torch.zeros(k)

    def __call__(self, logits, temp):
        if self.kind == "sinkhorn":
            return sinkhorn(logits, temp)
        p = F.softmax((logits - self.center) / temp, dim=-1)
        self.center = 0.9 * self.center + 0.1 * logits.mean(0)
        return p


def koleo(x, chunk):
    total = x.new_zeros(())
    for c in x.split(chunk):
        xn = F.normalize(c, dim=-1, eps=1e-8)
        with torch.no_grad():
            s = xn @ xn.t()
            s.fill_diagonal_(-2.0)
            j = s.argmax(1)
        d = (xn - xn[j] + 1e-8).norm(dim=-1)
        total = total - torch.log(d + 1e-8).mean()
    return total


def cosine(step, base, end, total, warmup, start=0.0):
    if step < warmup:
        if warmup <= 1:
            return base
        return start + (base - start) * step / (warmup - 1)
    if step >= total:
        return end
    j = step - warmup
    span = max(total - warmup, 1)
    return end + 0.5 * (base - end) * (1 + math.cos(math.pi * j / span))


def param_groups(net, a):
    groups = []
    depth = a.depth
    for name, p in net.named_parameters():
        if name.startswith("backbone."):
            n = name[len("backbone."):]
            if n.startswith("blocks."):
                lid = int(n.split(".")[1]) + 1
            elif n.split(".")[0] in ("pos_embed", "patch_embed", "mask_token", "cls_token"):
                lid = 0
            else:
                lid = depth + 1
            lr = a.layer_decay ** (depth + 1 - lid)
            if n.startswith("patch_embed"):
                lr *= a.patch_lr_mult
            no_wd = n.endswith(".bias") or "norm" in n or "gamma" in n
        else:
            lr = 1.0
            no_wd = name.endswith(".bias")
        groups.append({"params": [p], "lr_scale": lr, "wd_scale": 0.0 if no_wd else 1.0,
                       "name": name})
    return groups


# ----------------------------------------------------------------------------- k-NN

def knn(train_f, train_y, test_f, test_y, k=20, t=0.07):
    sims = test_f @ train_f.t()
    top, idx = sims.topk(k, dim=1)
    w = torch.exp(top / t)
    votes = torch.zeros(test_f.shape[0], 10).scatter_add_(1, train_y[idx], w)
    return (votes.argmax(1) == test_y).float().mean().item()


@torch.no_grad()
def evaluate(backbone, ev):
    was = backbone.training
    backbone.eval()
    feats = []
    for x in ev["views"].split(500):
        feats.append(F.normalize(backbone(x)[:, 0], dim=-1, eps=1e-12))
    backbone.train(was)
    f = torch.cat(feats)
    n = ev["n_train"]
    return knn(f[:n], ev["train_y"], f[n:], ev["test_y"])


# ----------------------------------------------------------------------------- training

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    A = ap.add_argument
    A("--steps", type=int, default=600)
    A("--batch", type=int, default=32)
    A("--lr", type=float, default=0.016, help="base_lr (scaled by sqrt(batch/1024))")
    A("--min-lr", type=float, default=1e-6)
    A("--warmup", type=int, default=10)
    A("--wd", type=float, nargs=2, default=(0.04, 0.1))
    A("--momentum", type=float, nargs=2, default=(0.99, 1.0))
    A("--teacher-temp", type=float, default=0.02)
    A("--student-temp", type=float, default=0.1)
    A("--layer-decay", type=float, default=0.9)
    A("--patch-lr-mult", type=float, default=0.2)
    A("--clip", type=float, default=3.0)
    A("--drop-path", type=float, default=0.0)
    A("--dim", type=int, default=64)
    A("--depth", type=int, default=4)
    A("--heads", type=int, default=2)
    A("--mlp", type=int, default=0, help="MLP width (0: 4·dim)")
    A("--patch", type=int, default=7)
    A("--pos-grid", type=int, default=0, help="0: global_size / patch")
    A("--layerscale", type=float, default=0.0, help="LayerScale init (0: no LayerScale)")
    A("--head-hidden", type=int, default=256)
    A("--bottleneck", type=int, default=64)
    A("--prototypes", type=int, default=256)
    A("--head-init", choices=["fanin", "trunc"], default="fanin")
    A("--targets", choices=["sinkhorn", "centering"], default="sinkhorn")
    A("--dino-weight", type=float, default=1.0)
    A("--ibot-weight", type=float, default=1.0)
    A("--koleo-weight", type=float, default=0.1)
    A("--mask-prob", type=float, default=0.5)
    A("--mask-ratio", type=float, nargs=2, default=(0.1, 0.5))
    A("--global-size", type=int, default=28)
    A("--global-scale", type=float, nargs=2, default=(0.32, 1.0))
    A("--n-local", type=int, default=0)
    A("--local-size", type=int, default=14)
    A("--local-scale", type=float, nargs=2, default=(0.05, 0.32))
    A("--ratio", type=float, nargs=2, default=(0.75, 4 / 3))
    A("--flip-p", type=float, default=0.5)
    A("--jitter-p", type=float, default=0.8)
    A("--brightness", type=float, default=0.4)
    A("--contrast", type=float, default=0.4)
    A("--solarize-p", type=float, default=0.2, help="solarize probability of global crop 2")
    A("--eval-every", type=int, default=50)
    A("--seed", type=int, default=0)
    A("--threads", type=int, default=1)
    A("--raw", action="store_true", help="only print the raw-pixel k-NN accuracy")
    A("--data", default="", help="folder with the four Fashion-MNIST .gz IDX files (default: the bundled subset)")
    A("--knn-train", type=int, default=2000, help="training images of the k-NN (0: all)")
    A("--label", default="")
    A("--json", default="")
    a = ap.parse_args()
    a.mlp = a.mlp or 4 * a.dim
    a.pos_grid = a.pos_grid or a.global_size // a.patch
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)

    global DATA
    if a.data:
        DATA = a.data
    tr_x, tr_y, te_x, te_y = load_data()
    n_knn = a.knn_train if 0 < a.knn_train <= len(tr_x) else len(tr_x)
    chunks = lambda x: [x[i:i + 5000] for i in range(0, len(x), 5000)]
    views = torch.cat([eval_views(c, a.global_size) for c in chunks(tr_x[:n_knn]) + chunks(te_x)])
    ev = {"views": views, "n_train": n_knn, "train_y": tr_y[:n_knn], "test_y": te_y}
    raw = F.normalize(views.flatten(1), dim=-1)
    # Scored 1000 test images at a time, so the full set's similarities fit in memory.
    raw_acc = sum(knn(raw[:n_knn], ev["train_y"], raw[n_knn + i:n_knn + i + 1000],
                      te_y[i:i + 1000]) * len(te_y[i:i + 1000])
                  for i in range(0, len(te_y), 1000)) / len(te_y)
    print(f"raw-pixel k-NN {raw_acc * 100:.1f}%", flush=True)
    if a.raw:
        return

    student = Net(a)
    teacher = copy.deepcopy(student)
    for p in teacher.parameters():
        p.requires_grad_(False)
    groups = param_groups(student, a)
    opt = torch.optim.AdamW(groups, lr=0.0, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    s_params = [p for p in student.parameters()]
    t_params = [p for p in teacher.parameters()]
    bb_params = list(student.backbone.parameters())
    hd_params = list(student.head.parameters())
    k = a.prototypes
    lnk = math.log(k)
    tgt_dino = Targets(a.targets, k)
    tgt_ibot = Targets(a.targets, k)
    gen = torch.Generator().manual_seed(a.seed)
    g = a.global_size // a.patch
    masks = MaskGen(g, g, a.mask_prob, a.mask_ratio, a.seed)
    B = a.batch
    per_epoch = tr_x.shape[0] // B
    n_terms = 2 * 1 + a.n_local * 2
    perm = None

    curve = []
    t_train = 0.0
    acc = evaluate(teacher.backbone, ev)
    curve.append({"step": 0, "knn": acc})
    print(f"[{a.label}] step 0 knn {acc * 100:.1f}%", flush=True)
    win = {"dino": [], "ibot": [], "koleo": []}
    for step in range(a.steps):
        t0 = time.perf_counter()
        epoch, pos = divmod(step, per_epoch)
        if pos == 0:
            perm = torch.randperm(tr_x.shape[0], generator=gen)
        imgs = tr_x[perm[pos * B:(pos + 1) * B]]
        lr = cosine(step, a.lr * math.sqrt(B / 1024), a.min_lr, a.steps, a.warmup)
        wd = cosine(step, a.wd[0], a.wd[1], a.steps, 0)
        mom = cosine(step, a.momentum[0], a.momentum[1], a.steps, 0)
        for grp in opt.param_groups:
            grp["lr"] = lr * grp["lr_scale"]
            grp["weight_decay"] = wd * grp["wd_scale"]
        with torch.no_grad():
            g1 = augment(imgs, a.global_size, a.global_scale, a, gen, 0.0)
            g2 = augment(imgs, a.global_size, a.global_scale, a, gen, a.solarize_p)
            glob = torch.cat([g1, g2])
            locs = None
            if a.n_local > 0:
                locs = torch.cat([augment(imgs, a.local_size, a.local_scale, a, gen, 0.0)
                                  for _ in range(a.n_local)])
        use_ibot = a.ibot_weight > 0
        mask = masks.batch(2 * B) if use_ibot else None
        # Teacher.
        with torch.no_grad():
            t_tok = teacher.backbone(glob)
            t_probs = tgt_dino(teacher.head(t_tok[:, 0]), a.teacher_temp)
            t_probs = torch.cat([t_probs[B:], t_probs[:B]])  # other global crop
            if use_ibot and mask.any():
                t_patch = t_tok[:, 1:][mask]
                t_pprobs = tgt_ibot(teacher.head(t_patch), a.teacher_temp)
        # Student.
        s_tok = student.backbone(glob, mask, a.drop_path)
        s_cls = s_tok[:, 0]
        s_logits = student.head(s_cls)
        ls = F.log_softmax(s_logits / a.student_temp, dim=-1)
        dino = -(t_probs * ls).sum()
        if locs is not None:
            l_tok = student.backbone(locs, None, a.drop_path)
            l_ls = F.log_softmax(student.head(l_tok[:, 0]) / a.student_temp, dim=-1)
            l_ls = l_ls.view(a.n_local, B, k)
            tt = t_probs.view(2, B, k)
            dino = dino - (tt[0][None] * l_ls).sum() - (tt[1][None] * l_ls).sum()
        dino = dino / (B * n_terms)
        kol = koleo(s_cls, B)
        ibot = s_cls.new_zeros(())
        if use_ibot and mask.any():
            s_patch = s_tok[:, 1:][mask]
            ce = -(t_pprobs * F.log_softmax(student.head(s_patch) / a.student_temp, -1)).sum(-1)
            counts = mask.sum(1, keepdim=True).expand_as(mask)[mask].float()
            ibot = (ce / counts).sum() / (2 * B)
        loss = a.dino_weight * dino + a.ibot_weight * ibot + a.koleo_weight * kol
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(bb_params, a.clip)
        torch.nn.utils.clip_grad_norm_(hd_params, a.clip)
        opt.step()
        with torch.no_grad():
            torch._foreach_mul_(t_params, mom)
            torch._foreach_add_(t_params, s_params, alpha=1 - mom)
        t_train += time.perf_counter() - t0
        win["dino"].append(dino.item() / lnk)
        win["ibot"].append(ibot.item() / lnk)
        win["koleo"].append(kol.item())
        done = step + 1
        if done % a.eval_every == 0 or done == a.steps:
            acc = evaluate(teacher.backbone, ev)
            row = {"step": done, "knn": acc,
                   "dino_lnk": float(np.mean(win["dino"])),
                   "ibot_lnk": float(np.mean(win["ibot"])),
                   "koleo": float(np.mean(win["koleo"])),
                   "ms_per_step": 1000 * t_train / done}
            curve.append(row)
            print(f"[{a.label}] step {done} knn {acc * 100:.1f}% dino/lnK {row['dino_lnk']:.3f} "
                  f"ibot/lnK {row['ibot_lnk']:.3f} koleo {row['koleo']:.3f} "
                  f"{row['ms_per_step']:.1f} ms/step", flush=True)
            win = {kk: [] for kk in win}
    out = {"label": a.label, "args": vars(a), "raw_knn": raw_acc, "curve": curve,
           "ms_per_step": 1000 * t_train / a.steps, "final_knn": curve[-1]["knn"],
           "best_knn": max(r["knn"] for r in curve)}
    if a.json:
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()

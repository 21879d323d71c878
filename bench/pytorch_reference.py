#!/usr/bin/env python3
"""The PyTorch side of `bench/compare.sh`: the workloads of `dinoscope bench kernels | vit | train`
with the same names, timed the same way (median of repetitions after a warm-up), in eager PyTorch:
fp32 with TF32 off, and optionally bf16 autocast. Writes a JSON list of rows like dinoscope's
`--json` (tool, name, seconds, rate, unit, peak_bytes, clock; tool is "pytorch", so
`dinoscope bench --json` refuses to replace the file).

The ViT is timm's `vit_small_patch14_dinov2` when timm is installed, else the same architecture
written out below (pre-norm blocks with LayerScale, CLS token, learned positions). The training
step is a DINOv2-style step: EMA teacher on the two global crops, student on the global and local
crops, a DINO head with `--prototypes` prototypes, DINO cross-entropy against centered teacher
targets, iBOT on the masked patch tokens, KoLeo, backward, AdamW, EMA.

Usage: pytorch_reference.py --json OUT.json [--quick] [--bf16] [--device cuda|cpu] [--reps N]
       pytorch_reference.py --json OUT.json --train-only [--dim …, the step's sizes]
"""

import argparse
import json
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def timer(device):
    """Returns f(fn, reps) -> (median seconds, clock name)."""

    def run(fn, reps):
        fn()  # warm-up
        times = []
        for _ in range(reps):
            if device.type == "cuda":
                start = torch.cuda.Event(enable_timing=True)
                end = torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                torch.cuda.synchronize()
                times.append(start.elapsed_time(end) / 1e3)
            else:
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
        return statistics.median(times), "gpu" if device.type == "cuda" else "wall"

    return run


class Block(nn.Module):
    def __init__(self, dim, heads, hidden):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ls1 = nn.Parameter(torch.full((dim,), 1e-5))
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.ls2 = nn.Parameter(torch.full((dim,), 1e-5))
        self.heads = heads

    def forward(self, x):
        b, n, d = x.shape
        h = self.norm1(x)
        q, k, v = self.qkv(h).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)
        x = x + self.ls1 * self.proj(a)
        return x + self.ls2 * self.fc2(F.gelu(self.fc1(self.norm2(x))))


class Vit(nn.Module):
    """DINOv2's ViT: patch embedding, CLS, registers, learned positions (resized bicubically)."""

    def __init__(self, dim=384, depth=12, heads=6, patch=14, registers=0, pos_grid=37):
        super().__init__()
        self.patch = patch
        self.embed = nn.Conv2d(3, dim, patch, patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.reg = nn.Parameter(torch.zeros(1, registers, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, dim))
        self.pos = nn.Parameter(torch.randn(1, 1 + pos_grid * pos_grid, dim) * 0.02)
        self.grid = pos_grid
        self.blocks = nn.ModuleList(Block(dim, heads, 4 * dim) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x, mask=None):
        b = x.shape[0]
        p = self.embed(x).flatten(2).transpose(1, 2)
        if mask is not None:
            p = torch.where(mask.unsqueeze(-1), self.mask_token.to(p.dtype), p)
        g = int(math.isqrt(p.shape[1]))
        pos = self.pos[:, 1:]
        if g != self.grid:
            pos = pos.reshape(1, self.grid, self.grid, -1).permute(0, 3, 1, 2)
            pos = F.interpolate(pos, size=(g, g), mode="bicubic", align_corners=False)
            pos = pos.permute(0, 2, 3, 1).reshape(1, g * g, -1)
        x = torch.cat([self.cls.expand(b, -1, -1) + self.pos[:, :1], p + pos], 1)
        x = torch.cat([x[:, :1], self.reg.expand(b, -1, -1), x[:, 1:]], 1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)


def vit_small(registers=0):
    try:
        import timm  # noqa: F401

        return timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0,
                                 dynamic_img_size=True), "timm"
    except Exception:  # timm missing or too old: the same architecture, written out
        return Vit(registers=registers), "builtin"


class Head(nn.Module):
    def __init__(self, dim, prototypes, hidden=2048, bottleneck=256):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, hidden),
                                 nn.GELU(), nn.Linear(hidden, bottleneck))
        self.last = nn.utils.parametrizations.weight_norm(nn.Linear(bottleneck, prototypes, bias=False))

    def forward(self, x):
        return self.last(F.normalize(self.mlp(x), dim=-1))


def train_step_fn(device, args):
    """One DINOv2-style step of the ViT-S/14 recipe (or `--train-*` sizes); returns a closure."""
    b, g, l, nl, k = args.train_batch, args.global_size, args.local_size, args.n_local, args.prototypes
    heads = args.heads or max(1, args.dim // 64)
    student = Vit(dim=args.dim, depth=args.depth, heads=heads, patch=args.patch,
                  pos_grid=g // args.patch).to(device)
    teacher = Vit(dim=args.dim, depth=args.depth, heads=heads, patch=args.patch,
                  pos_grid=g // args.patch).to(device)
    s_head, t_head = (Head(args.dim, k, args.head_hidden, args.bottleneck).to(device) for _ in range(2))
    teacher.load_state_dict(student.state_dict())
    t_head.load_state_dict(s_head.state_dict())
    for p in list(teacher.parameters()) + list(t_head.parameters()):
        p.requires_grad_(False)
    params = list(student.parameters()) + list(s_head.parameters())
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.04)
    center = torch.zeros(k, device=device)
    globals_ = torch.randn(2 * b, 3, g, g, device=device)
    locals_ = torch.randn(nl * b, 3, l, l, device=device)
    n_p = (g // args.patch) ** 2
    mask = torch.rand(2 * b, n_p, device=device) < 0.15

    def step():
        nonlocal center
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            with torch.no_grad():
                t_tok = teacher(globals_)
                t_cls = F.softmax((t_head(t_tok[:, 0]) - center) / 0.04, -1)
                t_pat = F.softmax(t_head(t_tok[:, 1:][mask]) / 0.04, -1)
                center = 0.9 * center + 0.1 * t_head(t_tok[:, 0]).float().mean(0)
            s_g = student(globals_, mask)
            s_l = student(locals_) if nl > 0 else None
            cls = s_g[:, 0] if s_l is None else torch.cat([s_g[:, 0], s_l[:, 0]])
            logp = F.log_softmax(s_head(cls) / 0.1, -1)
            tc, sp = t_cls.reshape(2, b, -1), logp.reshape(2 + nl, b, -1)
            # Each student crop against each teacher global crop but its own (DINOv2's pairing).
            terms = [-(tc[ti] * sp[si]).sum(-1).mean() for ti in range(2) for si in range(2 + nl) if si != ti]
            dino = sum(terms) / len(terms)
            ibot = -(t_pat * F.log_softmax(s_head(s_g[:, 1:][mask]) / 0.1, -1)).sum(-1).mean()
            f = F.normalize(s_g[:b, 0].float(), dim=-1)
            dist = torch.cdist(f, f) + torch.eye(b, device=device) * 1e9
            koleo = -torch.log(dist.min(1).values + 1e-8).mean()
            loss = dino + ibot + 0.1 * koleo
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 3.0)
        opt.step()
        with torch.no_grad():
            for ps, pt in zip(params, list(teacher.parameters()) + list(t_head.parameters())):
                pt.mul_(0.996).add_(ps.detach(), alpha=0.004)

    return step


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", required=True)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="the sizes compare.sh --quick runs (CPU)")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast instead of fp32")
    ap.add_argument("--vit-runs", default="224x1,224x64,518x8")
    ap.add_argument("--train-only", action="store_true",
                    help="only the training step (another model's sizes beside the suite's)")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--depth", type=int, default=12)
    ap.add_argument("--patch", type=int, default=14)
    ap.add_argument("--global-size", type=int, default=224)
    ap.add_argument("--local-size", type=int, default=98)
    ap.add_argument("--n-local", type=int, default=8)
    ap.add_argument("--heads", type=int, default=0, help="attention heads (0: dim / 64)")
    ap.add_argument("--prototypes", type=int, default=65536)
    ap.add_argument("--head-hidden", type=int, default=2048)
    ap.add_argument("--bottleneck", type=int, default=256)
    ap.add_argument("--train-batch", type=int, default=64)
    ap.add_argument("--train-steps", type=int, default=3)
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device = torch.device(args.device)
    run = timer(device)
    rows = []
    suffix = " (bf16)" if args.bf16 else ""
    dt = torch.bfloat16 if args.bf16 else torch.float32

    def row(name, t, rate, unit, clock, peak=None):
        r = {"tool": "pytorch", "name": name + suffix, "seconds": t, "rate": rate, "unit": unit, "clock": clock}
        if peak is not None:
            r["peak_bytes"] = peak
        rows.append(r)
        print(f"{r['name']:<48} {t * 1e3:10.3f} ms {rate:12.1f} {unit}")

    if not args.train_only:
        sizes = [1024, 2048] if args.quick else [1024, 2048, 4096, 8192]
        for s in sizes:
            a = torch.randn(s, s, device=device, dtype=dt)
            b = torch.randn(s, s, device=device, dtype=dt)
            t, c = run(lambda: a @ b, args.reps)
            row(f"matmul {s}x{s}x{s}", t, 2 * s**3 / t / 1e9, "GFLOP/s", c)
        rows_ = 64 * 261
        for name, n, k in [("qkv", 3 * 384, 384), ("proj", 384, 384), ("fc1", 1536, 384), ("fc2", 384, 1536)]:
            x = torch.randn(rows_, k, device=device, dtype=dt)
            w = torch.randn(n, k, device=device, dtype=dt) * 0.1
            bias = torch.randn(n, device=device, dtype=dt) * 0.1
            t, c = run(lambda: F.linear(x, w, bias), args.reps)
            row(f"linear ViT-S {name} {rows_}x{n}x{k}", t, 2 * rows_ * n * k / t / 1e9, "GFLOP/s", c)
        xg = torch.randn(rows_ * 1536, device=device, dtype=dt)
        yg = torch.empty_like(xg)
        gb = lambda tensors, t: tensors * xg.numel() * xg.element_size() / t / 1e9
        t, c = run(lambda: yg.copy_(xg), args.reps)
        row(f"copy {xg.numel()}", t, gb(2, t), "GB/s", c)
        ln = nn.LayerNorm(384, eps=1e-6).to(device, dt)
        for r in [rows_] if args.quick else [rows_, 65536]:
            x = torch.randn(r, 384, device=device, dtype=dt)
            t, c = run(lambda: ln(x), args.reps)
            row(f"layernorm {r}x384", t, 2 * r * 384 * x.element_size() / t / 1e9, "GB/s", c)
        t, c = run(lambda: F.gelu(xg), args.reps)
        row(f"gelu {rows_ * 1536}", t, gb(2, t), "GB/s", c)
        xs = torch.randn(64 * 6 * 261, 261, device=device, dtype=dt)
        t, c = run(lambda: F.softmax(xs, -1), args.reps)
        row(f"softmax {xs.shape[0]}x261", t, 2 * xs.numel() * xs.element_size() / t / 1e9, "GB/s", c)
        # A bias gradient: the column sums of fc1's [16704, 1536] output gradient.
        t, c = run(lambda: xg.view(-1, 1536).sum(0), args.reps)
        row(f"sum_rows {rows_}x1536", t, gb(1, t), "GB/s", c)
        # Residual + LayerScale (x + branch·γ), the teacher EMA (one lerp) and one fused AdamW step
        # (where the device has it) over the same number of elements as the rows above.
        branch = torch.randn_like(xg)
        gamma = torch.rand(384, device=device, dtype=dt) + 0.5
        t, c = run(lambda: torch.add(xg.view(-1, 384), branch.view(-1, 384) * gamma), args.reps)
        row(f"residual+layerscale {xg.numel()}", t, gb(3, t), "GB/s", c)
        if not args.bf16:
            t, c = run(lambda: yg.lerp_(xg, 0.004), args.reps)
            row(f"ema {xg.numel()}", t, gb(3, t), "GB/s", c)
            param = nn.Parameter(xg.clone())
            param.grad = branch.clone()
            fused = device.type == "cuda"
            opt = torch.optim.AdamW([param], lr=1e-4, weight_decay=0.04, fused=fused, foreach=False if fused else None)
            t, c = run(lambda: opt.step(), args.reps)
            row(f"adamw {xg.numel()}", t, gb(7, t), "GB/s", c)
        ab = 4 if args.quick else 64
        q, kk, v = (torch.randn(ab, 6, 261, 64, device=device, dtype=dt, requires_grad=True) for _ in range(3))
        flops = 4.0 * ab * 6 * 261 * 261 * 64
        t, c = run(lambda: F.scaled_dot_product_attention(q, kk, v), args.reps)
        row(f"attention fwd B={ab} H=6 T=261 d=64", t, flops / t / 1e9, "GFLOP/s", c)
        out = F.scaled_dot_product_attention(q, kk, v)
        g = torch.randn_like(out)
        t, c = run(lambda: torch.autograd.grad(out, (q, kk, v), g, retain_graph=True), args.reps)
        row(f"attention bwd B={ab} H=6 T=261 d=64", t, 2.5 * flops / t / 1e9, "GFLOP/s", c)

        model, kind = vit_small()
        model = model.to(device).eval()
        print(f"ViT-S/14: {kind}")
        for spec in args.vit_runs.split(","):
            side, batch = (int(v) for v in spec.split("x"))
            side = side // 14 * 14
            px = torch.randn(batch, 3, side, side, device=device)

            def fwd():
                with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
                    model(px)

            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            t, c = run(fwd, args.reps)
            peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else None
            row(f"vit {side}x{side} batch {batch}", t, batch / t, "img/s", c, peak)

    step = train_step_fn(device, args)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(args.train_steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = (time.perf_counter() - t0) / args.train_steps
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else None
    row(f"train step batch {args.train_batch}", t, args.train_batch / t, "img/s", "wall", peak)
    with open(args.json, "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()

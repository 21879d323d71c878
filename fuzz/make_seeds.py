"""Writes the fuzz targets' seed corpus (small valid inputs of each format) into fuzz/corpus."""
import gzip, io, json, struct, pathlib
import numpy as np
from PIL import Image

root = pathlib.Path(__file__).resolve().parent
repo = root.parent
corpus = root / "corpus"


def safetensors(tensors, metadata=None):
    header, data = {}, b""
    for name, (shape, values) in tensors.items():
        raw = np.asarray(values, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def backbone(d=8, hidden=16, patch=2, grid=2, depth=1, registers=0):
    rng = np.random.default_rng(0)
    t = {}
    def add(name, shape):
        t[name] = (shape, rng.standard_normal(int(np.prod(shape))) * 0.02)
    add("cls_token", [1, 1, d])
    add("pos_embed", [1, 1 + grid * grid, d])
    add("mask_token", [1, d])
    if registers:
        add("register_tokens", [1, registers, d])
    add("patch_embed.proj.weight", [d, 3, patch, patch])
    add("patch_embed.proj.bias", [d])
    for b in range(depth):
        p = f"blocks.{b}."
        for n in ["norm1", "norm2"]:
            add(p + n + ".weight", [d]); add(p + n + ".bias", [d])
        add(p + "attn.qkv.weight", [3 * d, d]); add(p + "attn.qkv.bias", [3 * d])
        add(p + "attn.proj.weight", [d, d]); add(p + "attn.proj.bias", [d])
        add(p + "ls1.gamma", [d]); add(p + "ls2.gamma", [d])
        add(p + "mlp.fc1.weight", [hidden, d]); add(p + "mlp.fc1.bias", [hidden])
        add(p + "mlp.fc2.weight", [d, hidden]); add(p + "mlp.fc2.bias", [d])
    add("norm.weight", [d]); add("norm.bias", [d])
    return t


(corpus / "weights" / "tiny.safetensors").write_bytes(safetensors(backbone()))
(corpus / "weights" / "tiny_reg.safetensors").write_bytes(safetensors(backbone(registers=2, depth=2)))

for i, f in enumerate(sorted((repo / "assets" / "configs").glob("*.ron"))):
    kind = 0 if f.name.startswith("train_") else 1
    (corpus / "configs" / f"{f.stem}.bin").write_bytes(bytes([kind]) + f.read_bytes())
for d in ["tiny_dinov2", "tiny_dinov2_reg", "tiny_dinov3"]:
    (corpus / "configs" / f"{d}_json.bin").write_bytes(bytes([2]) + (repo / "tests/fixtures" / d / "config.json").read_bytes())

imgs = gzip.decompress((repo / "assets/fashion_mnist/t10k-images-idx3-ubyte.gz").read_bytes())
labs = gzip.decompress((repo / "assets/fashion_mnist/t10k-labels-idx1-ubyte.gz").read_bytes())
n = 3
small = struct.pack(">IIII", 0x803, n, 28, 28) + imgs[16:16 + n * 784]
small_l = struct.pack(">II", 0x801, n) + labs[8:8 + n]
(corpus / "idx" / "images_only").write_bytes(bytes([255]) + small)
split = round(len(small) * 255 / (len(small) + len(small_l)))
(corpus / "idx" / "with_labels").write_bytes(bytes([split]) + small + small_l)
gz = gzip.compress(small)
(corpus / "idx" / "gzip").write_bytes(bytes([255]) + gz)

pic = Image.fromarray((np.arange(16 * 12 * 3).reshape(12, 16, 3) * 7 % 256).astype(np.uint8))
for fmt, name in [("PNG", "pic.png"), ("JPEG", "pic.jpg"), ("WEBP", "pic.webp")]:
    b = io.BytesIO(); pic.save(b, fmt); (corpus / "image" / name).write_bytes(b.getvalue())
b = io.BytesIO(); pic.convert("LA").save(b, "PNG"); (corpus / "image" / "grey_alpha.png").write_bytes(b.getvalue())

cfg = (repo / "assets/configs/train_debug.ron").read_text()
k = 4
state = {
    "student": ([10], np.linspace(-1, 1, 10)),
    "teacher": ([10], np.linspace(-1, 1, 10)),
    "adamw_m": ([10], np.zeros(10)),
    "adamw_v": ([10], np.ones(10) * 1e-4),
    "center_dino": ([k], np.zeros(k)),
    "center_ibot": ([k], np.zeros(k)),
}
meta = {"step": "3", "train_config": cfg, "format": "dinoscope-train-state-1"}
(corpus / "checkpoint" / "state.safetensors").write_bytes(safetensors(state, meta))

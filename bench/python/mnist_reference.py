"""MNIST loading the way the reference code does it with torchvision, for the dataset benchmark.

plain:   the IDX .gz files read into uint8 tensors (torchvision's read_sn3_pascalvincent_tensor),
         then every example through the Dataset (PIL image, ToTensor) and stacked into one float
         tensor, i.e. iterating torchvision.datasets.MNIST(train=..., transform=ToTensor()).
rotated: goe's rotated-MNIST dataset: the train file, random_split of the 240,000 (image,
         rotation) items 70/20/10 with seed 40, each split subsampled by 20, and only the kept
         items go through TF.rotate + ToTensor (+ inversion of the 0-degree copies).

torchvision is used when importable; otherwise the same steps are written out with PIL, numpy
and torch (the functions below do exactly what torchvision's do for these inputs).
Prints one JSON line: seconds, examples, output bytes, RSS figures.
"""
import argparse
import gzip
import json
import os
import resource
import time

import numpy as np
import torch
from PIL import Image

try:
    import torchvision.transforms.functional as TF

    def to_tensor(pic):
        return TF.to_tensor(pic)

    def rotate(pic, angle):
        return TF.rotate(pic, angle)

    BACKEND = "torchvision"
except ImportError:  # same operations, written out

    def to_tensor(pic):
        img = torch.from_numpy(np.array(pic, np.uint8, copy=True))
        img = img.view(pic.size[1], pic.size[0], 1).permute((2, 0, 1)).contiguous()
        return img.to(dtype=torch.get_default_dtype()).div(255)

    def rotate(pic, angle):
        return pic.rotate(angle, Image.NEAREST, expand=False)

    BACKEND = "PIL+numpy+torch (torchvision not installed)"


def vm(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def read_idx(path):
    with gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    nd = magic % 256
    dims = [int.from_bytes(data[4 * (i + 1): 4 * (i + 2)], "big") for i in range(nd)]
    return torch.frombuffer(bytearray(data), dtype=torch.uint8, offset=4 * (nd + 1)).view(*dims)


def find(root, stem):
    for name in (stem, stem + ".gz"):
        if os.path.exists(os.path.join(root, name)):
            return os.path.join(root, name)
    raise FileNotFoundError(os.path.join(root, stem))


def plain(root):
    out = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(find(root, prefix + "-images-idx3-ubyte"))
        labels = read_idx(find(root, prefix + "-labels-idx1-ubyte")).long()
        xs = []
        for i in range(len(images)):
            img = Image.fromarray(images[i].numpy(), mode="L")
            xs.append(to_tensor(img))
        out[split] = (torch.stack(xs), labels)
    return out


def rotated(root):
    images = read_idx(find(root, "train-images-idx3-ubyte"))
    labels = read_idx(find(root, "train-labels-idx1-ubyte")).long()
    n = len(images) * 4
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(40)).tolist()
    lengths = [int(n * 0.7), int(n * 0.2)]
    lengths.append(n - sum(lengths))
    out, start = {}, 0
    for name, length in zip(("train", "val", "test"), lengths):
        items = perm[start:start + length]
        start += length
        keep = np.random.choice(length, length // 20, replace=False)  # FixedSizeWrapper
        xs, ys, rs = [], [], []
        for k in keep:
            i = items[k]
            r = i % 4
            img = rotate(Image.fromarray(images[i // 4].numpy(), mode="L"), 90 * r)
            x = to_tensor(img)
            if r == 0:
                x = x.max() - x
            xs.append(x)
            ys.append(int(labels[i // 4]))
            rs.append(r)
        out[name] = (torch.stack(xs), torch.tensor(ys), torch.tensor(rs))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--mode", choices=["plain", "rotated"], default="plain")
    args = ap.parse_args()
    torch.set_num_threads(1)
    base = vm("VmRSS")
    reset_peak()
    t0 = time.perf_counter()
    out = plain(args.root) if args.mode == "plain" else rotated(args.root)
    secs = time.perf_counter() - t0
    peak = vm("VmHWM")
    examples = sum(v[0].shape[0] for v in out.values())
    tensor_bytes = sum(t.numel() * t.element_size() for v in out.values() for t in v)
    print(json.dumps({"backend": BACKEND, "mode": args.mode, "seconds": secs, "examples": examples,
                      "tensor_bytes": tensor_bytes, "baseline_rss": base, "peak_rss": peak,
                      "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()

"""CelebA image loading the way the reference code does it with torchvision, for the dataset benchmark.

torchvision.datasets.CelebA(split=...) opens each JPEG with PIL and applies the transform
Compose([Resize((32, 32)), ToTensor()]); the experiments then iterate a DataLoader. This script
does the same over the images listed in <root>/list_attr_celeba.txt (all of them), either in
process (--workers 0) or with a DataLoader using --workers worker processes, and stacks the
result into one float tensor [N, 3, 32, 32].

torchvision is used when importable; otherwise Resize is Image.resize(size, BILINEAR) and
ToTensor is written out (torchvision calls exactly these for PIL images).
Prints one JSON line: seconds, images, images/s, output bytes, RSS figures.
"""
import argparse
import json
import os
import time

import numpy as np
import torch
from PIL import Image

try:
    import torchvision.transforms as T

    def make_transform(h, w):
        return T.Compose([T.Resize((h, w)), T.ToTensor()])

    BACKEND = "torchvision"
except ImportError:

    def make_transform(h, w):
        def transform(pic):
            pic = pic.resize((w, h), Image.BILINEAR)
            img = torch.from_numpy(np.array(pic, np.uint8, copy=True))
            img = img.view(pic.size[1], pic.size[0], len(pic.getbands())).permute((2, 0, 1)).contiguous()
            return img.to(dtype=torch.get_default_dtype()).div(255)
        return transform

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


class Images(torch.utils.data.Dataset):
    def __init__(self, folder, files, transform):
        self.folder, self.files, self.transform = folder, files, transform

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        x = Image.open(os.path.join(self.folder, self.files[i]))
        return self.transform(x)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--size", type=int, nargs=2, default=[32, 32])
    args = ap.parse_args()
    torch.set_num_threads(1)
    with open(os.path.join(args.root, "list_attr_celeba.txt")) as f:
        lines = f.read().splitlines()[2:]
    files = [l.split()[0] for l in lines if l.strip()]
    ds = Images(os.path.join(args.root, "img_align_celeba"), files, make_transform(*args.size))
    base = vm("VmRSS")
    reset_peak()
    t0 = time.perf_counter()
    if args.workers == 0:
        x = torch.stack([ds[i] for i in range(len(ds))])
    else:
        loader = torch.utils.data.DataLoader(ds, batch_size=256, num_workers=args.workers)
        x = torch.cat(list(loader))
    secs = time.perf_counter() - t0
    peak = vm("VmHWM")
    print(json.dumps({"backend": BACKEND, "workers": args.workers, "seconds": secs, "images": len(ds),
                      "images_per_s": len(ds) / secs, "tensor_bytes": x.numel() * x.element_size(),
                      "baseline_rss": base, "peak_rss": peak}))


if __name__ == "__main__":
    main()

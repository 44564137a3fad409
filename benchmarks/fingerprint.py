"""What a per-image fingerprint of ``neuronpath extract`` costs: SHA-256 of the file's bytes against
its size and modification time, next to decoding and preprocessing the image.

Writes ``--images`` photo-like JPEGs of 500 x 375 (ImageNet's typical size) to a temporary
folder, then times, per image and with the page cache warm (the best of three rounds):
hashing the file's bytes (what each record's ``fingerprint`` is), reading its size and
modification time (the alternative), and decoding it with timm's 224 x 224 evaluation
transform (what every run does anyway).

    python benchmarks/fingerprint.py --images 400
"""

import argparse
import hashlib
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from timm.data import create_transform


def best_of(rounds: int, action) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=400)
    args = parser.parse_args()
    generator = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        files = []
        for i in range(args.images):
            coarse = generator.integers(0, 256, (28, 28, 3), dtype=np.uint8)
            files.append(Path(folder) / f"{i}.jpg")
            Image.fromarray(coarse).resize((500, 375), Image.BILINEAR).save(files[-1], quality=90)
        size = sum(file.stat().st_size for file in files)
        transform = create_transform(input_size=(3, 224, 224), crop_pct=0.875, interpolation="bicubic")
        hashing = best_of(3, lambda: [hashlib.sha256(file.read_bytes()).digest() for file in files])
        stat = best_of(3, lambda: [(s.st_size, s.st_mtime_ns) for s in map(os.stat, files)])
        decoding = best_of(1, lambda: [transform(Image.open(file).convert("RGB")) for file in files])
    per_image = {name: seconds / len(files) * 1e6 for name, seconds in
                 [("hash", hashing), ("stat", stat), ("decode", decoding)]}  # fmt: skip
    print(f"{len(files)} JPEGs of 500 x 375, {size / len(files) / 1e3:.0f} kB each, page cache warm; per image:")
    print(f"  SHA-256 of the bytes:           {per_image['hash']:8.1f} us ({size / hashing / 1e6:.0f} MB/s)")
    print(f"  size and modification time:     {per_image['stat']:8.1f} us")
    print(f"  decode + timm transform to 224: {per_image['decode']:8.1f} us")
    print(f"  hashing / decoding: {per_image['hash'] / per_image['decode']:.3f}")


if __name__ == "__main__":
    main()

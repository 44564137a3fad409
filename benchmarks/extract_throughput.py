"""Images per second of ``neuronpath extract`` by model, quadrature, processes and threads.

Runs the command itself (a fresh process per configuration, so the times include what a
user waits for between the first and the last batch, not the start-up) and reads the
throughput each run records in ``FILE.meta.json``:

- the digits ViT (the fixture model, 6 blocks of 256 neurons, 32 x 32 images) on the first
  digits test images;
- timm ``vit_tiny_patch16_224`` with random weights at 224 x 224 (12 blocks of 768
  neurons) on random images;

each with the default quadrature (3 Gauss-Legendre nodes) and the paper preset
(``--n-steps 20 --method riemann_left``), with one process of 1 and of N threads
(``OMP_NUM_THREADS``; N is the number of CPU cores) and with ``torchrun
--nproc_per_node N`` (one thread each, gloo). Every run uses ``--batch-size 8`` on CPU.

    python benchmarks/extract_throughput.py --digits-images 16 --vit-images 4   # 5 minutes on 2 idle cores
    python benchmarks/extract_throughput.py --digits-images 64 --vit-images 16 --json out.json
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from captum_neuronpath import digits

ROOT = Path(__file__).parent.parent
FIXTURE = ROOT / "tests" / "data" / "digits_vit_d6.safetensors"
QUADRATURES = {
    "default (3-node Gauss-Legendre)": [],
    "paper preset (20-node left Riemann)": ["--n-steps", "20", "--method", "riemann_left"],
}


def datasets(folder: Path, digits_images: int, vit_images: int):
    """(name, model arguments, data file) of both models."""
    _, (images, labels) = digits.digits_split()
    digits_file = folder / "digits.safetensors"
    save_file(
        {"images": images[:digits_images].contiguous(), "labels": labels[:digits_images].contiguous()}, digits_file
    )
    generator = torch.Generator().manual_seed(0)
    vit_file = folder / "random224.safetensors"
    images = torch.randn(vit_images, 3, 224, 224, generator=generator)
    save_file({"images": images, "labels": torch.randint(0, 1000, (vit_images,), generator=generator)}, vit_file)
    yield (
        f"digits ViT, {digits_images} images",
        ["--model", "captum_neuronpath.digits:build_digits_vit", "--checkpoint", str(FIXTURE)],
        digits_file,
    )
    yield f"vit_tiny_patch16_224 (random), {vit_images} images", ["--model", "timm:vit_tiny_patch16_224"], vit_file


def extract(model_args, data: Path, out: Path, quadrature, processes: int, threads: int) -> float:
    """Run the command once; its images per second as recorded in ``FILE.meta.json``."""
    if processes == 1:
        launcher = [sys.executable, "-m", "captum_neuronpath"]
    else:
        torchrun = Path(sys.executable).parent / "torchrun"
        launcher = [str(torchrun), "--standalone", "--nproc_per_node", str(processes), "-m", "captum_neuronpath"]
    command = [*launcher, "extract", *model_args, *quadrature, "--data", str(data), "--out", str(out)]
    command += ["--batch-size", "8", "--device", "cpu", "--overwrite"]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1")
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
    run = json.loads(Path(f"{out}.meta.json").read_text())["runs"][-1]
    assert run["processes"] == processes and run["threads_per_process"] == threads, run
    return run["images_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--digits-images", type=int, default=64, help="digits test images (default 64)")
    parser.add_argument("--vit-images", type=int, default=16, help="random 224 x 224 images (default 16)")
    parser.add_argument("--cores", type=int, default=os.cpu_count(), help="N: threads and processes (default: all)")
    parser.add_argument("--json", type=Path, help="also write the table as JSON")
    args = parser.parse_args()
    n = args.cores
    layouts = [("1 process, 1 thread", 1, 1), (f"1 process, {n} threads", 1, n), (f"torchrun {n} processes", n, 1)]
    rows = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        for name, model_args, data in datasets(Path(folder), args.digits_images, args.vit_images):
            for quadrature, options in QUADRATURES.items():
                rates = {}
                for layout, processes, threads in layouts:
                    rates[layout] = extract(model_args, data, Path(folder) / "paths.jsonl", options, processes, threads)
                    print(
                        f"{name} | {quadrature} | {layout}: {rates[layout]:.3g} images/s", file=sys.stderr, flush=True
                    )
                rows.append({"model": name, "quadrature": quadrature, **rates})
    header = ["model", "quadrature"] + [layout for layout, _, _ in layouts]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join([row["model"], row["quadrature"]] + [f"{row[h]:.3g}" for h in header[2:]]) + " |")
    print(f"\nimages per second, {os.cpu_count()} CPU cores, torch {torch.__version__}; "
          f"{time.perf_counter() - started:.0f} s in all")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()

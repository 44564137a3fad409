"""Time, peak memory and page size of ``neuronpath report`` on a synthetic ImageNet-sized extract.

Writes a ``paths.jsonl`` (and its ``.meta.json``) of 50,000 records, 1,000 classes and 12
layers of 3,072 channels (ViT-B/16's MLP layers), then runs ``neuronpath report`` on it in
a fresh process and prints its wall time, its peak resident memory and the size of
``index.html``, each against its target (60 s, 1.5 GiB, 20 MB).

Each class draws its paths from a few prototype neurons per layer, shared with the other
classes of its group of ten, plus random neurons, so the classes have nearest neighbours
and the frequencies are as sparse as real paths'.

    python benchmarks/report_scale.py                      # the targets' size
    python benchmarks/report_scale.py --records 5000 --classes 100 --keep /tmp/scale
    python benchmarks/report_scale.py --browser            # and the page's times in headless Chromium
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from captum_neuronpath._report.page import THUMBNAILS

TARGETS = {"seconds": 60.0, "peak_gib": 1.5, "page_mb": 20.0}


def write_synthetic_paths(
    file: Path, records: int, classes: int, layers: int, channels: int, seed: int = 0
) -> Path:
    """A ``neuronpath extract``-like ``file`` and ``file.meta.json`` of random, class-structured paths."""
    generator = torch.Generator().manual_seed(seed)
    groups = (torch.arange(classes) // 10).clamp(max=max(classes // 10 - 1, 0))
    own = torch.randint(0, channels, (classes, layers, 3), generator=generator)
    shared = torch.randint(0, channels, (int(groups.max()) + 1, layers, 3), generator=generator)
    labels = torch.arange(records) % classes
    choice = torch.randint(0, 3, (records, layers), generator=generator)
    source = torch.rand(records, layers, generator=generator)
    prototype = torch.where(
        (source < 0.5)[..., None], own[labels], shared[groups[labels]]
    ).gather(2, choice[..., None])[..., 0]
    random = torch.randint(0, channels, (records, layers), generator=generator)
    paths = torch.where(source < 0.8, prototype, random)
    wrong = torch.rand(records, generator=generator) < 0.2
    predictions = torch.where(wrong, torch.randint(0, classes, (records,), generator=generator), labels)
    jas = torch.rand(records, generator=generator) * 0.8 - 0.1
    with open(file, "w") as handle:
        for i in range(records):
            handle.write(json.dumps({
                "index": i, "file": None, "label": int(labels[i]), "target": int(labels[i]),
                "prediction": int(predictions[i]), "probability": 0.5, "path": paths[i].tolist(),
                "jas": round(float(jas[i]), 6),
            }) + "\n")  # fmt: skip
    meta = {
        "command": "neuronpath extract",
        "settings": {"data": None, "num_inputs": records},
        "layers": [{"name": f"blocks.{layer}.mlp.act", "width": channels} for layer in range(layers)],
        "token": 0,
        "class_names": [f"class {c:04d}" for c in range(classes)],
    }
    Path(f"{file}.meta.json").write_text(json.dumps(meta))
    return file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--classes", type=int, default=1_000)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--channels", type=int, default=3_072)
    parser.add_argument("--keep", type=Path, help="write the extract and the report here (default: a temporary folder)")
    parser.add_argument("--browser", action="store_true", help="also time the page in headless Chromium (selenium)")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="report_scale_"))
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    file = write_synthetic_paths(folder / "paths.jsonl", args.records, args.classes, args.layers, args.channels)
    print(f"wrote {file} ({file.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - started:.1f} s")
    command = [sys.executable, "-m", "captum_neuronpath", "report", str(file), "--out", str(folder / "report")]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ))
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(done.stderr)
    peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / 2**30  # ru_maxrss is in KiB on Linux
    page_mb = (folder / "report" / "index.html").stat().st_size / 1e6
    report_mb = (folder / "report" / "report.json").stat().st_size / 1e6
    print(f"neuronpath report: {args.records} records, {args.classes} classes, {args.layers} x {args.channels} "
          f"neurons; {torch.get_num_threads()} CPU threads")  # fmt: skip
    for name, value, unit in (("seconds", seconds, "s"), ("peak_gib", peak_gib, "GiB"), ("page_mb", page_mb, "MB")):
        print(f"  {name:<9} {value:8.2f} {unit:<4} target {TARGETS[name]:6.1f}  ratio {value / TARGETS[name]:.2f}")
    print(f"  report.json {report_mb:.1f} MB; files in {folder / 'report'}")
    print(f"  with images, the page's {THUMBNAILS} thumbnails at most would add {_thumbnails_mb():.1f} MB "
          "(noise, the worst case for JPEG)")  # fmt: skip
    if args.browser:
        for name, seconds in _browser_times(folder / "report" / "index.html").items():
            print(f"  browser: {name:<28} {seconds:6.2f} s")


def _browser_times(page: Path) -> dict:
    """Seconds to open the page, and to show the last class's panel and its first neuron's, in headless Chromium."""
    import shutil

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    times = {}
    try:
        started = time.perf_counter()
        driver.get(page.resolve().as_uri())  # returns once the page has loaded and its scripts have run
        times["open the page"] = time.perf_counter() - started
        search = driver.find_element(By.ID, "search")
        started = time.perf_counter()
        search.send_keys("9")
        times["search the class list"] = time.perf_counter() - started
        items = driver.find_elements(By.CSS_SELECTOR, "#class-list li[data-class]")
        started = time.perf_counter()
        items[-1].click()
        driver.find_element(By.CSS_SELECTOR, "#class-panel h2")
        times["show a class's panel"] = time.perf_counter() - started
        started = time.perf_counter()
        driver.find_element(By.CSS_SELECTOR, "#class-panel a.neuron").click()
        driver.find_element(By.CSS_SELECTOR, "#neuron-panel h2")
        times["show a neuron's panel"] = time.perf_counter() - started
    finally:
        driver.quit()
    return times


def _thumbnails_mb() -> float:
    """The bytes of the most thumbnails a page holds, each of random noise at the largest size."""
    from PIL import Image

    from captum_neuronpath._report.inputs import THUMBNAIL_SIZE, thumbnail

    noise = torch.randint(0, 256, (THUMBNAIL_SIZE, THUMBNAIL_SIZE, 3), dtype=torch.uint8).numpy()
    return THUMBNAILS * len(thumbnail(Image.fromarray(noise))) / 1e6


if __name__ == "__main__":
    main()

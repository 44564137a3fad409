"""Peak memory of one greedy step of the locator on ViT-B/16 at 224 px, per image, against
``internal_batch_size``, and a check that the scores do not change.

Each setting runs in a fresh process; the peak resident memory after loading the model and
running the clean pass is subtracted, so the figure is what the substituted pass itself
needs (activations kept for the backward pass). The step timed is the deepest one (all
earlier layers hold a path neuron), which is the largest; every step of ``NeuronPath``
costs about the same.

With ``--whole-path`` it measures a whole ``NeuronPath.attribute()`` instead: on the
generic path, with the model-family shortcuts and greedy steps that carry tangents (the
default), and with the shortcuts but the kept graph (each greedy step keeps the autograd
graph of the blocks before the layer that changed, for the next step to backpropagate
through).

    python benchmarks/memory.py [--model vit_base_patch16_224] [--n-steps 20]
    python benchmarks/memory.py --whole-path
"""

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, timm, torch
import captum_neuronpath as cnp
name, n_steps, batch_size, internal = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
internal = None if internal == "none" else int(internal)
torch.manual_seed(0)
model = timm.create_model(name).eval()
images = torch.randn(batch_size, 3, 224, 224)
layers = cnp.vit_mlp_layers(model)
with torch.no_grad():
    model(images)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
prefix = torch.zeros(batch_size, len(layers) - 1, dtype=torch.long)
scores = cnp.LayerJointIntegratedGradients(lambda x: model(x).softmax(-1), layers).attribute(
    images, layer_index=len(layers) - 1, path_prefix=prefix, target=0, n_steps=n_steps, internal_batch_size=internal)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
torch.save(scores, sys.argv[5])
print(json.dumps(dict(base_mb=base / 1024, peak_mb=peak / 1024)))
"""

WHOLE_PATH = r"""
import json, resource, sys, timm, torch
import captum_neuronpath as cnp
from captum_neuronpath._core.engine import GreedySearch
name, n_steps, batch_size, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
GreedySearch.tangents = mode != "kept-graph"
torch.manual_seed(0)
model = timm.create_model(name).eval()
images = torch.randn(batch_size, 3, 224, 224)
with torch.no_grad():
    model(images)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
locator = cnp.NeuronPath(lambda x: model(x).softmax(-1), cnp.vit_mlp_layers(model))
locator.family_plan = mode != "generic"
result = locator.attribute(images, target=0, n_steps=n_steps, method="riemann_left")
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
torch.save(result.path, sys.argv[5])
print(json.dumps(dict(base_mb=base / 1024, peak_mb=peak / 1024)))
"""


def child(script: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def whole_path(args: argparse.Namespace) -> None:
    import torch

    print(f"{args.model}, 224 px, n_steps={args.n_steps}, batch of {args.batch_size}, NeuronPath.attribute()\n")
    print("| passes | peak memory of the search (MiB per image) | same path |")
    print("| --- | --- | --- |")
    paths = {}
    for mode in ["generic", "kept-graph", "tangents"]:
        out = f"/tmp/memory_path_{mode}.pt"
        result = child(WHOLE_PATH, args.model, str(args.n_steps), str(args.batch_size), mode, out)
        paths[mode] = torch.load(out)
        per_image = (result["peak_mb"] - result["base_mb"]) / args.batch_size
        same = torch.equal(paths[mode], paths["generic"])
        print(f"| {mode} | {per_image:.0f} | {same} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="vit_base_patch16_224")
    parser.add_argument("--n-steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--whole-path", action="store_true", help="a whole NeuronPath search, three ways")
    args = parser.parse_args()
    if args.whole_path:
        return whole_path(args)
    import torch

    print(f"{args.model}, 224 px, n_steps={args.n_steps}, batch of {args.batch_size}, deepest greedy step\n")
    print("| internal_batch_size | rows per pass | peak memory of the pass (MiB per image) | max score change |")
    print("| --- | --- | --- | --- |")
    reference = None
    for internal in ["none", "10", "4", "1"]:
        out = f"/tmp/memory_scores_{internal}.pt"
        result = child(CHILD, args.model, str(args.n_steps), str(args.batch_size), internal, out)
        scores = torch.load(out)
        reference = scores if reference is None else reference
        change = float((scores - reference).abs().max() / reference.abs().max())
        rows = args.batch_size * args.n_steps if internal == "none" else max(int(internal), args.batch_size)
        per_image = (result["peak_mb"] - result["base_mb"]) / args.batch_size
        print(f"| {internal} | {rows} | {per_image:.0f} | {change:.1e} |")


if __name__ == "__main__":
    main()

"""The paper's Table 1 (JAS, removal and enhancement accuracy deviation) on any model: ``neuronpath table``.

Offline default: the digits ViT (trained once, then cached) on its 397 test images.

    python benchmarks/paper_table.py                                   # digits ViT
    python benchmarks/paper_table.py --captum-methods LayerIntegratedGradients,LayerConductance
    python benchmarks/paper_table.py --model timm:vit_base_patch16_224 --pretrained \\
        --data imagenet_val_subset.safetensors                         # your own
"""

import sys

from captum_neuronpath._cli import main

if __name__ == "__main__":
    sys.exit(main(["table", *sys.argv[1:]]))

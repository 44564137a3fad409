"""captum-neuronpath: influential neuron paths in Vision Transformers, as Captum attributions.

Implements Wang et al., "Discovering Influential Neuron Path in Vision Transformers"
(ICLR 2025). Every public name is importable from this package.
"""

from captum_neuronpath import paths
from captum_neuronpath._core.baselines import ActivationPath, InfluencePatternPath, LayerMethodPath, RandomPath
from captum_neuronpath._core.intervention import intervene
from captum_neuronpath._core.layer_joint_integrated_gradients import LayerJointIntegratedGradients
from captum_neuronpath._core.neuron_joint_integrated_gradients import NeuronJointIntegratedGradients
from captum_neuronpath._core.neuron_path import NeuronPath
from captum_neuronpath._core.path_saliency import PathSaliency, path_activation
from captum_neuronpath._core.result import NeuronPathResult
from captum_neuronpath._models import (
    last_token,
    mlp_layers,
    readout_token,
    vit_attention_layers,
    vit_mlp_layers,
    vit_readout_token,
)
from captum_neuronpath._utils.quadrature import PAPER_QUADRATURE
from captum_neuronpath._utils.sites import ModuleInput

__version__ = "0.1.0"

__all__ = [
    "ActivationPath", "InfluencePatternPath", "LayerMethodPath", "RandomPath", "intervene",
    "LayerJointIntegratedGradients", "NeuronJointIntegratedGradients", "NeuronPath", "NeuronPathResult",
    "PathSaliency", "path_activation", "PAPER_QUADRATURE", "ModuleInput", "last_token", "mlp_layers",
    "readout_token", "vit_attention_layers", "vit_mlp_layers", "vit_readout_token", "paths",
]  # fmt: skip

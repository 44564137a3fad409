import torch


class ModuleInput(torch.nn.Module):
    """The input of `module` as a neuron site (e.g. a gated MLP's down projection)."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, *args, **kwargs):
        raise RuntimeError("ModuleInput is a neuron site, not a layer to call")

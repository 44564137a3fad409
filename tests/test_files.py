"""The cache of trained weights: trained once, then loaded, tied weights included."""

import torch
from torch import nn

from captum_neuronpath._utils.files import cached_model


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(5, 3)
        self.out = nn.Linear(3, 5, bias=False)
        self.out.weight = self.embed.weight  # tied, as a GPT-2's head


def test_trained_once_then_loaded_with_the_same_weights(tmp_path):
    path = tmp_path / "cache" / "tied.safetensors"
    trained, lines = [], []

    def train():
        torch.manual_seed(0)
        trained.append(Tied().train())
        return trained[-1]

    first = cached_model(path, Tied, train, lines.append, "the tied model")
    assert len(trained) == 1 and path.exists() and not first.training
    assert lines == [f"training the tied model once; caching it at {path}"]
    assert not list(path.parent.glob("*.partial"))
    second = cached_model(path, Tied, train, lines.append, "the tied model")
    assert len(trained) == 1 and len(lines) == 1 and not second.training  # loaded, not trained again
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), name
    assert second.out.weight is second.embed.weight

"""The modular-addition GPT-2: its data and split, training once into the cache, and a
neuron path that the task's answer depends on."""

import pytest
import torch
import transformers

import captum_neuronpath as cnp
from captum_neuronpath import metrics, modular_addition
from captum_neuronpath.digits import default_cache_dir


def last_logits_probability(model):
    return lambda ids: model(ids).logits[:, -1].softmax(-1)


def answer_accuracy(model, data):
    return metrics.accuracy(model, data, readout=lambda output: output.logits[:, -1])


def test_modular_addition_data_and_split():
    ids, answers = modular_addition.modular_addition_data(p=7)
    assert ids.shape == (49, 3) and (ids[:, 2] == 7).all()
    assert torch.equal(answers, (ids[:, 0] + ids[:, 1]) % 7)
    (train_ids, train_answers), (test_ids, test_answers) = modular_addition.modular_addition_split(p=7)
    assert len(train_ids) == round(0.8 * 49) and len(train_ids) + len(test_ids) == 49
    pairs = {tuple(row) for row in torch.cat([train_ids, test_ids]).tolist()}
    assert len(pairs) == 49 and not {tuple(r) for r in train_ids.tolist()} & {tuple(r) for r in test_ids.tolist()}
    assert torch.equal(train_answers, (train_ids[:, 0] + train_ids[:, 1]) % 7)


@pytest.fixture(scope="module")
def toy():
    """The trained GPT-2 (trained here into the suite's cache if not there yet) and whether it was trained."""
    cached = any(default_cache_dir().glob("modular_addition_gpt2_*.safetensors"))
    lines = []
    model = modular_addition.modular_addition_gpt2(log=lines.append)
    return model, cached, lines


def test_modular_addition_gpt2_learns_the_task_and_is_cached(toy):
    model, cached, lines = toy
    assert isinstance(model, transformers.GPT2LMHeadModel) and not model.training
    assert cached or any("test accuracy" in line for line in lines)  # trained here unless the cache held it
    train, test = modular_addition.modular_addition_split()
    assert answer_accuracy(model, train) >= 0.99
    assert answer_accuracy(model, test) >= 0.95
    again = modular_addition.modular_addition_gpt2()
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    assert answer_accuracy(modular_addition.build_modular_addition_gpt2(), test) < 0.2


def test_removing_the_neuron_path_hurts_more_than_activation_and_random_paths(toy):
    model = toy[0]
    _, (ids, answers) = modular_addition.modular_addition_split()
    forward = last_logits_probability(model)
    with torch.no_grad():
        correct = forward(ids).argmax(-1) == answers
    ids, answers = ids[correct][:32], answers[correct][:32]
    layers = cnp.mlp_layers(model)
    rows = torch.arange(len(ids))

    def answer_probability(path=None):
        with torch.no_grad():
            if path is None:
                return forward(ids)[rows, answers]
            with cnp.intervene(layers, path, mode="remove", token=-1):
                return forward(ids)[rows, answers]

    clean = answer_probability()
    drops = {}
    for name, method in [
        ("neuron path", cnp.NeuronPath(forward, layers, token=-1)),
        ("activation", cnp.ActivationPath(forward, layers, token=-1)),
        ("random", cnp.RandomPath(forward, layers, token=-1, seed=0)),
    ]:
        path = method.attribute(ids, target=answers, top_k=4).path
        assert path.shape == (32, 2, 4)
        drops[name] = float((clean - answer_probability(path)).mean())
    assert drops["neuron path"] > 0.2, drops
    assert drops["neuron path"] > drops["activation"], drops
    assert drops["neuron path"] > 10 * max(drops["random"], 0.0), drops

"""Language models: mlp_layers / readout_token / last_token on GPT-2, BERT, RoBERTa and
gated-MLP families (small random models built from configs), the JAS of their paths
against the brute force on token ids, and padded batches."""

import pytest
import torch
import transformers
from torch import nn

import captum_neuronpath as cnp
from captum_neuronpath._utils.sites import ModuleInput

from helpers import assert_unchanged, brute_force_jas, brute_force_layer_scores, inputs_of, small_vit, snapshot

VOCAB = 40


def gpt2(cls=transformers.GPT2LMHeadModel):
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=VOCAB, n_positions=16, n_embd=32, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=0
    )
    return cls(config).eval()


def bert(cls=transformers.BertForSequenceClassification):
    torch.manual_seed(0)
    config_cls = transformers.RobertaConfig if cls.__name__.startswith("Roberta") else transformers.BertConfig
    config = config_cls(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48)
    return cls(config).eval()


GATED = {
    "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM, transformers.LlamaModel),
    "mistral": (transformers.MistralConfig, transformers.MistralForCausalLM, transformers.MistralModel),
    "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM, transformers.Qwen2Model),
}


def gated(name="llama", head=True):
    torch.manual_seed(0)
    config_cls, with_head, backbone = GATED[name]
    config = config_cls(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, pad_token_id=0,
    )  # fmt: skip
    return (with_head if head else backbone)(config).eval()


def last_logits_probability(model):
    return lambda ids: model(ids).logits[:, -1].softmax(-1)


# Where each family's neurons are.


@pytest.mark.parametrize(
    "cls", [transformers.GPT2Model, transformers.GPT2LMHeadModel, transformers.GPT2ForSequenceClassification]
)
def test_gpt2_sites_are_each_blocks_mlp_activation(cls):
    model = gpt2(cls)
    blocks = model.base_model.h
    assert cnp.mlp_layers(model) == [block.mlp.act for block in blocks]
    assert len({id(layer) for layer in cnp.mlp_layers(model)}) == 2
    assert cnp.readout_token(model) == -1


@pytest.mark.parametrize(
    "cls",
    [
        transformers.BertModel, transformers.BertForSequenceClassification, transformers.BertForMaskedLM,
        transformers.RobertaModel, transformers.RobertaForSequenceClassification, transformers.RobertaForMaskedLM,
    ],
)  # fmt: skip
def test_bert_and_roberta_sites_are_each_layers_intermediate_activation(cls):
    model = bert(cls)
    layers = model.base_model.encoder.layer
    assert cnp.mlp_layers(model) == [layer.intermediate.intermediate_act_fn for layer in layers]
    if cls.__name__.endswith("MaskedLM"):
        with pytest.raises(TypeError, match="every position; pass token"):
            cnp.readout_token(model)
    else:
        assert cnp.readout_token(model) == 0


@pytest.mark.parametrize("head", [True, False], ids=["causal-lm", "backbone"])
@pytest.mark.parametrize("name", sorted(GATED))
def test_gated_mlp_sites_are_the_down_projections_input(name, head):
    model = gated(name, head)
    sites = cnp.mlp_layers(model)
    blocks = model.base_model.layers
    assert [type(site) for site in sites] == [ModuleInput] * 2
    assert [site.module for site in sites] == [block.mlp.down_proj for block in blocks]
    assert cnp.readout_token(model) == -1


class _GatedMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.gate_proj, self.up_proj, self.down_proj = nn.Linear(4, 6), nn.Linear(4, 6), nn.Linear(6, 4)


class _Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.mlp = _GatedMLP()


class _UnheardOf(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([_Block(), _Block(), _Block()])


def test_gated_mlps_are_recognised_by_their_structure_not_their_class_name():
    model = _UnheardOf()
    assert [site.module for site in cnp.mlp_layers(model)] == [block.mlp.down_proj for block in model.layers]
    del model.layers[1].mlp.up_proj
    with pytest.raises(TypeError, match="gate_proj"):
        cnp.mlp_layers(model)


@pytest.mark.parametrize("function", [cnp.mlp_layers, cnp.readout_token])
def test_unsupported_language_model_lists_the_supported_families(function):
    torch.manual_seed(0)
    config = transformers.GPTNeoXConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2
    )
    with pytest.raises(TypeError, match="GPT-2.*BERT.*LLaMA.*pass (layers|token)"):
        function(transformers.GPTNeoXForCausalLM(config))


def test_vision_names_stay_vision_only_and_mlp_layers_covers_vision():
    vit = small_vit(depth=2)
    assert cnp.mlp_layers(vit) == cnp.vit_mlp_layers(vit)
    assert cnp.readout_token(vit) == cnp.vit_readout_token(vit) == 0
    with pytest.raises(TypeError, match="not a supported Vision Transformer"):
        cnp.vit_mlp_layers(gpt2())


# last_token


def test_last_token_for_right_left_and_no_padding():
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 1, 0, 0, 0]])
    positions = cnp.last_token(mask)
    assert positions.dtype == torch.long and positions.tolist() == [2, 4, 4, 1]
    assert cnp.last_token(mask.bool()).tolist() == [2, 4, 4, 1]
    assert cnp.last_token(mask.float()).tolist() == [2, 4, 4, 1]
    lengths = torch.tensor([5, 3, 4])
    right = (torch.arange(5) < lengths[:, None]).long()
    assert torch.equal(cnp.last_token(right), lengths - 1)


@pytest.mark.parametrize(
    "mask,error",
    [(torch.tensor([[1, 1], [0, 0]]), ValueError), (torch.ones(3), ValueError), ([[1, 1]], TypeError)],
    ids=["empty-row", "1-d", "list"],
)
def test_last_token_refuses_bad_masks(mask, error):
    with pytest.raises(error):
        cnp.last_token(mask)


# Paths on token ids against the brute force.


def _assert_matches_brute_force(forward, layers, oracle_layers, ids, target, token):
    res = cnp.NeuronPath(forward, layers, token=token).attribute(ids, target=target, n_steps=5, method="gausslegendre")
    assert res.path.shape == (len(ids), len(layers))
    reference = brute_force_jas(
        forward, oracle_layers, ids, target, res.path[..., None], token=token, n_steps=5, method="gausslegendre"
    )
    assert torch.allclose(res.jas, reference, rtol=1e-9, atol=1e-12)
    first = brute_force_layer_scores(
        forward, oracle_layers, ids, target, res.path[:, :0, None], 0, token=token, n_steps=5, method="gausslegendre"
    )
    assert torch.equal(res.path[:, 0], first.argmax(-1))
    return res


def test_gpt2_paths_on_token_ids_match_the_brute_force():
    model = gpt2().double()
    before = snapshot(model)
    ids = torch.randint(0, VOCAB, (3, 6), generator=torch.Generator().manual_seed(1))
    target = torch.tensor([3, 17, 29])
    layers = cnp.mlp_layers(model)
    _assert_matches_brute_force(last_logits_probability(model), layers, layers, ids, target, cnp.readout_token(model))
    assert_unchanged(model, before)


def test_bert_paths_with_an_attention_mask_match_the_brute_force():
    model = bert().double()
    ids = torch.randint(1, VOCAB, (3, 6), generator=torch.Generator().manual_seed(2))
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [1] * 5 + [0]])
    ids = ids * mask  # padding is token 0

    def forward(x):  # the engine repeats the batch once per quadrature node; so does the mask here
        return model(x, attention_mask=mask.repeat(len(x) // len(mask), 1)).logits.softmax(-1)

    layers = cnp.mlp_layers(model)
    _assert_matches_brute_force(forward, layers, layers, ids, torch.tensor([0, 1, 1]), cnp.readout_token(model))


@pytest.mark.parametrize("name", ["llama", "qwen2"])
def test_gated_mlp_paths_match_the_brute_force_at_the_down_projections_input(name):
    model = gated(name).double()
    before = snapshot(model)
    ids = torch.randint(1, VOCAB, (3, 5), generator=torch.Generator().manual_seed(3))
    target = torch.tensor([5, 11, 2])
    oracle = inputs_of([block.mlp.down_proj for block in model.base_model.layers])
    res = _assert_matches_brute_force(last_logits_probability(model), cnp.mlp_layers(model), oracle, ids, target, -1)
    assert res.layer_scores.shape == (3, 2, 48)  # intermediate_size neurons per block
    assert_unchanged(model, before)


def test_the_input_site_oracle_equals_an_output_site_inserted_before_the_down_projection():
    """The brute force at a module's input agrees with the brute force at the output of
    an identity placed right before it, so the gated-MLP reference above is sound."""
    model = gated("llama").double()
    ids = torch.randint(1, VOCAB, (2, 5), generator=torch.Generator().manual_seed(4))
    target, selector = torch.tensor([7, 8]), torch.tensor([[[3, 40], [47, 0]], [[12, 12], [5, 9]]])
    forward = last_logits_probability(model)
    downs = [block.mlp.down_proj for block in model.model.layers]
    at_inputs = brute_force_jas(forward, inputs_of(downs), ids, target, selector, token=-1, n_steps=4)
    identities = [nn.Identity() for _ in downs]
    for block, identity, down in zip(model.model.layers, identities, downs):
        block.mlp.down_proj = nn.Sequential(identity, down)
    at_outputs = brute_force_jas(forward, identities, ids, target, selector, token=-1, n_steps=4)
    assert torch.allclose(at_inputs, at_outputs, rtol=1e-12) and at_inputs.abs().min() > 0


# Padded batches: each sequence read at its own last token, as if alone.


def _padded(lengths, length, left, seed):
    ids = torch.randint(1, VOCAB, (len(lengths), length), generator=torch.Generator().manual_seed(seed))
    mask = torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        if left:
            mask[i, length - n :] = 1
        else:
            mask[i, :n] = 1
    return ids * mask, mask  # padding is token 0


@pytest.mark.parametrize("family,left", [("gpt2", False), ("llama", True)], ids=["gpt2-right", "llama-left"])
def test_padded_batch_paths_equal_each_sequence_alone(family, left):
    model = (gpt2() if family == "gpt2" else gated("llama")).double()
    layers = cnp.mlp_layers(model)
    ids, mask = _padded([5, 3, 4], 5, left, seed=5)
    target = torch.tensor([1, 2, 3])

    def forward(x, attention_mask):
        logits = model(x, attention_mask=attention_mask).logits
        return logits[torch.arange(len(x)), cnp.last_token(attention_mask)].softmax(-1)

    token = cnp.last_token(mask)
    batch = cnp.NeuronPath(forward, layers, token=token).attribute(ids, target=target, additional_forward_args=(mask,))
    alone = cnp.NeuronPath(last_logits_probability(model), layers, token=-1)
    for i in range(len(ids)):
        sequence = ids[i : i + 1, mask[i].bool()]
        single = alone.attribute(sequence, target=target[i : i + 1])
        assert torch.equal(batch.path[i], single.path[0]), i
        assert torch.allclose(batch.jas[i], single.jas[0], rtol=1e-6), i
        assert torch.allclose(batch.layer_scores[i], single.layer_scores[0], rtol=1e-7, atol=1e-12), i


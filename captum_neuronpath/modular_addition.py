"""A language-model task whose answer is known: modular addition on a small GPT-2.

Each sequence is three tokens, ``a b =`` with ``a, b`` in ``[0, p)`` and ``=`` the token
``p``; the model reads the last position and predicts ``(a + b) mod p``. The ``p * p``
ordered pairs are split at random (seed 0) into 80% for training and 20% for testing; as
the split is over ordered pairs, a test pair's swap ``b a =`` is often a training pair.
The model is a Hugging Face ``GPT2LMHeadModel`` built from a config (2 blocks, 64-wide
tokens, 4 heads, 256 MLP neurons per block, no dropout), trained full-batch in 200 steps
and cached like :mod:`captum_neuronpath.digits`. Needs transformers
(``pip install 'captum-neuronpath[hf]'``).
"""

from pathlib import Path
from typing import Callable, Optional, Tuple

import torch
from torch import Tensor
from torch.nn import Module

from captum_neuronpath import metrics
from captum_neuronpath._utils.files import cached_model
from captum_neuronpath.digits import _one_cycle_adamw, default_cache_dir

P = 31
TRAIN_FRACTION = 0.8


def modular_addition_data(p: int = P) -> Tuple[Tensor, Tensor]:
    r"""
    Every sequence of the task: ``(p * p, 3)`` token ids ``a b =`` (``=`` is token ``p``)
    and the ``(p * p,)`` answers ``(a + b) mod p``, pairs in row-major order.

    Args:

        p (int, optional): The modulus; the vocabulary is ``p + 1`` tokens.
                    Default: ``31``

    Returns:
        *(Tensor, Tensor)*: LongTensors ``ids`` and ``answers``.

    Examples::

        >>> from captum_neuronpath import modular_addition
        >>> ids, answers = modular_addition.modular_addition_data(p=5)
        >>> ids[7].tolist(), int(answers[7])
        ([1, 2, 5], 3)
    """
    a, b = (t.flatten() for t in torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij"))
    ids = torch.stack([a, b, torch.full_like(a, p)], dim=1)
    return ids, (a + b) % p


def modular_addition_split(
    p: int = P, train_fraction: float = TRAIN_FRACTION, seed: int = 0
) -> Tuple[Tuple[Tensor, Tensor], Tuple[Tensor, Tensor]]:
    r"""
    The train/test split of :func:`modular_addition_data`: a random permutation of the
    ordered pairs whose first ``round(train_fraction * p * p)`` train.

    Args:

        p (int, optional): The modulus of :func:`modular_addition_data`.
                    Default: ``31``
        train_fraction (float, optional): Fraction of the pairs that train.
                    Default: ``0.8``
        seed (int, optional): Seed of the permutation.
                    Default: ``0``

    Returns:
        ``((train_ids, train_answers), (test_ids, test_answers))``.
    """
    ids, answers = modular_addition_data(p)
    order = torch.randperm(len(ids), generator=torch.Generator().manual_seed(seed))
    train, test = order[: round(train_fraction * len(ids))], order[round(train_fraction * len(ids)) :]
    return (ids[train], answers[train]), (ids[test], answers[test])


def build_modular_addition_gpt2(p: int = P) -> Module:
    """The task's ``GPT2LMHeadModel`` (2 blocks, 64-wide, 4 heads, no dropout), randomly initialised."""
    try:
        import transformers
    except ImportError:
        raise ImportError("modular_addition needs transformers: pip install 'captum-neuronpath[hf]'") from None
    config = transformers.GPT2Config(
        vocab_size=p + 1, n_positions=3, n_embd=64, n_layer=2, n_head=4,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=p, eos_token_id=p,
    )  # fmt: skip
    return transformers.GPT2LMHeadModel(config)


def train_modular_addition_gpt2(
    p: int = P, steps: int = 200, seed: int = 0, log: Optional[Callable[[str], None]] = None
) -> Module:
    r"""
    Train the task's GPT-2 from scratch on the training pairs: full batch, AdamW (weight
    decay 1.0) with a one-cycle schedule peaking at 3e-3, cross entropy of the answer at
    the last position, on one CPU thread (torch's thread count is restored afterwards),
    as the matrices are small. Deterministic on a given machine.

    Args:

        p (int, optional): The modulus.
                    Default: ``31``
        steps (int, optional): Optimiser steps, one per pass over the training pairs.
                    Default: ``200``
        seed (int, optional): Seed of the initialisation (the split always uses seed 0).
                    Default: ``0``
        log (Callable, optional): Receives the test accuracy every 100 steps.
                    Default: ``None``

    Returns:
        The trained model, in eval mode.
    """
    (ids, answers), test = modular_addition_split(p)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small matrices; the same weights whatever the thread count
    try:
        torch.manual_seed(seed)
        model = build_modular_addition_gpt2(p)
        optimise = _one_cycle_adamw(model, total_steps=steps, weight_decay=1.0, betas=(0.9, 0.98))
        for step in range(steps):
            model.train()
            optimise(torch.nn.functional.cross_entropy(model(ids).logits[:, -1], answers))
            if log is not None and (step + 1) % 100 == 0:
                test_accuracy = metrics.accuracy(model, test, readout=lambda output: output.logits[:, -1])
                log(f"step {step + 1}/{steps}: test accuracy {test_accuracy:.3f}")
        return model.eval()
    finally:
        torch.set_num_threads(threads)


def modular_addition_gpt2(
    cache_dir: Optional[Path] = None,
    p: int = P,
    steps: int = 200,
    seed: int = 0,
    log: Optional[Callable[[str], None]] = None,
) -> Module:
    r"""
    The task's trained GPT-2: loaded from the cache, or trained once and cached.

    Args:

        cache_dir (Path, optional): Where the weights live.
                    Default: :func:`captum_neuronpath.digits.default_cache_dir`
        p, steps, seed, log: As for :func:`train_modular_addition_gpt2`.

    Returns:
        The model, a ``GPT2LMHeadModel`` in eval mode.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = cache_dir / f"modular_addition_gpt2_p{p}_n{steps}_s{seed}.safetensors"
    build, train = lambda: build_modular_addition_gpt2(p), lambda: train_modular_addition_gpt2(p, steps, seed, log)
    return cached_model(path, build, train, log, f"the modular-addition GPT-2 ({steps} steps)")

"""The layer-progressive neuron locator (Algorithm 1 of the paper) and its refinement."""

from typing import Any, Dict, List, Optional, Tuple

import torch
from captum._utils.progress import progress
from captum._utils.typing import TargetType, TensorOrTupleOfTensorsGeneric
from captum.attr import GradientAttribution, LayerAttribution
from captum.log import log_usage
from torch import Tensor

from captum_neuronpath._core.base import SiteAttribution
from captum_neuronpath._core.engine import (
    GreedySearch,
    Prepared,
    Resume,
    advance_block_input,
    carries_tangents,
    joint_score,
    select_examples,
)
from captum_neuronpath._core.result import NeuronPathResult
from captum_neuronpath._utils.joint import channel_masks, extended_set_scores, set_sum, stack_padded, top_channels
from captum_neuronpath._utils.quadrature import DEFAULT_METHOD, DEFAULT_N_STEPS, Quadrature
from captum_neuronpath._utils.validation import check_int

#: The refinement tries the swaps of the examples whose best predicted JAS is above
#: ``(1 - TRIAL_MARGIN)`` times their JAS (the margin and its cost on the performance page).
TRIAL_MARGIN = 0.05


class NeuronPath(SiteAttribution, LayerAttribution, GradientAttribution):
    r"""
    The layer-progressive neuron locator of Wang et al., "Discovering Influential Neuron
    Path in Vision Transformers" (ICLR 2025), Algorithm 1 as the authors implement it.

    For each example it walks the layers input side first. At layer ``t`` every channel
    is scored by the joint attribution of the path so far extended by that channel
    (see :class:`LayerJointIntegratedGradients`) and the best one (``top_k`` best) joins
    the path; ties go to the lowest index. The result also carries the whole path's
    joint attribution score (see :class:`NeuronJointIntegratedGradients`) and every
    step's candidate scores.

    With ``n_steps=20, method="riemann_left"`` and ``forward_func = lambda x:
    model(x).softmax(-1)``, ``target = labels`` this is the paper's setting and
    reproduces the authors' paths.
    """

    @log_usage()
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        target: TargetType = None,
        additional_forward_args: Any = None,
        n_steps: int = DEFAULT_N_STEPS,
        method: str = DEFAULT_METHOD,
        internal_batch_size: Optional[int] = None,
        top_k: int = 1,
        show_progress: bool = False,
        refine_steps: int = 0,
        refine_candidates: int = 1,
    ) -> NeuronPathResult:
        r"""
        Args:

            inputs (Tensor or tuple[Tensor, ...]): Input for which paths are located,
                        batch first; each example gets its own path.
            target (int, tuple, Tensor or list, optional): Captum's output selection,
                        e.g. the labels.
                        Default: ``None`` (``forward_func`` returns one score per example)
            additional_forward_args (Any, optional): Further arguments of
                        ``forward_func`` after the inputs.
                        Default: ``None``
            n_steps (int, optional): Number of quadrature nodes.
                        Default: ``3`` (the library's quadrature; the paper's is
                        ``**cnp.PAPER_QUADRATURE``, see the concepts page)
            method (str, optional): Captum quadrature: ``riemann_left``,
                        ``riemann_right``, ``riemann_middle``, ``riemann_trapezoid``
                        or ``gausslegendre``.
                        Default: ``"gausslegendre"``
            internal_batch_size (int, optional): Largest number of rows (examples
                        times nodes) in one forward pass; bounds memory without
                        changing the result.
                        Default: ``None``
            top_k (int, optional): Neurons kept per layer; all of them join the path.
                        Default: ``1``
            show_progress (bool, optional): Show a progress bar over the layers.
                        Default: ``False``
            refine_steps (int, optional): Sweeps of coordinate ascent on the whole
                        path's JAS after the greedy search (Definition 2 of the paper asks
                        for the path that maximises it). Layer by layer, the JAS of
                        swapping each of the layer's channels in for the chosen one is
                        predicted from the current path's integrated gradients; for the
                        examples whose best prediction is near their JAS or above it, the
                        ``refine_candidates`` best predictions are scored exactly in one
                        batched pass, and a swap is kept only when the JAS rises. A sweep
                        costs one pass per layer over ``refine_candidates`` copies of those
                        examples; sweeps stop early when no path improves. The result's JAS is never
                        below the greedy path's. Needs ``top_k=1``. Its gain and cost are
                        measured on the performance page.
                        Default: ``0`` (the paper's greedy path)
            refine_candidates (int, optional): Swaps per layer scored exactly by the
                        refinement, the best predicted first.
                        Default: ``1``

        Returns:
            :class:`NeuronPathResult` with ``path`` ``(B, L)`` (``(B, L, K)`` when
            ``top_k > 1``), ``jas`` ``(B,)`` and ``layer_scores`` ``(B, L, C)``.

        Examples::

            >>> import timm, torch, captum_neuronpath as cnp
            >>> model = timm.create_model("vit_tiny_patch16_224", img_size=32,
            ...                           patch_size=8, depth=3, num_classes=10).eval()
            >>> locator = cnp.NeuronPath(lambda x: model(x).softmax(-1),
            ...                          cnp.vit_mlp_layers(model),
            ...                          token=cnp.vit_readout_token(model))
            >>> res = locator.attribute(torch.randn(2, 3, 32, 32), target=torch.tensor([1, 7]))
            >>> res.path.shape, res.jas.shape, res.layer_scores.shape
            (torch.Size([2, 3]), torch.Size([2]), torch.Size([2, 3, 768]))
        """
        prepared, rule, internal_batch_size = self._prepare(
            inputs, target, additional_forward_args, n_steps, method, internal_batch_size
        )
        num_channels = prepared.num_channels
        top_k = check_int(top_k, "top_k", 1, min(num_channels))
        if check_int(refine_steps, "refine_steps", 0):
            check_int(refine_candidates, "refine_candidates", 1, min(num_channels))
            if top_k > 1:
                raise ValueError(f"refine_steps needs top_k=1, got top_k={top_k}")
        device = prepared.clean.activations[0].device
        path = torch.empty(prepared.batch_size, 0, top_k, dtype=torch.long, device=device)
        step_scores = []
        steps = progress(range(len(self.layers)), desc="NeuronPath layers", disable=not show_progress)
        search = GreedySearch(self.forward_func, self.layers, prepared, rule, internal_batch_size)
        for layer_index in steps:
            scores = search.candidate_scores(layer_index, path)
            path = torch.cat([path, top_channels(scores, top_k).unsqueeze(1)], dim=1)
            step_scores.append(scores)
        jas, gradients, gradient_sum = search.joint_score(path)
        layer_scores = stack_padded(step_scores)
        if refine_steps:
            path, jas = self._refine(prepared, path, jas, search, gradients, gradient_sum, refine_steps,
                                     refine_candidates, rule, internal_batch_size)  # fmt: skip
        return NeuronPathResult(
            path=path if top_k > 1 else path.squeeze(-1),
            jas=self._finish(prepared, jas),
            layer_scores=layer_scores.to(prepared.dtype),
        )

    def _refine(
        self,
        prepared: Prepared,
        path: Tensor,
        jas: Tensor,
        search: GreedySearch,
        gradients: Dict[int, Tensor],
        gradient_sum: Tensor,
        steps: int,
        num_candidates: int,
        rule: Quadrature,
        internal_batch_size: Optional[int],
    ) -> Tuple[Tensor, Tensor]:
        """Coordinate ascent on the JAS of ``(B, L, 1)`` paths.

        At each layer, every channel's JAS after a swap is predicted from the current
        path's pass (its integrated gradients, with the swapped-in channel's own
        scaling left out; the current channel's prediction is the path's JAS). For the
        examples whose best prediction is above ``(1 - TRIAL_MARGIN)`` times their JAS,
        the ``num_candidates`` best predictions are scored exactly in one pass over a
        batch of those examples, one copy per candidate, and the best one is kept if the
        JAS rises. The winning
        trial's gradients feed the next layer's predictions. Where the greedy steps
        carried tangents (see ``engine.GreedySearch``), the trial of layer ``l`` starts at
        the block of layer ``l`` from the current path's input of that block and its
        tangent. Every layer's gradients come from the greedy search's last pass in the
        first sweep where it gave them, else from one pass of the whole model per sweep.
        """
        batch_size, num_layers, _ = path.shape
        activations = prepared.clean.activations
        # Trials restart where the greedy steps did, and where their batch of up to num_candidates
        # copies of the examples runs all nodes in one pass.
        per_copy = None if internal_batch_size is None else internal_batch_size // num_candidates
        restart = search.carries and carries_tangents(prepared, rule, per_copy)
        for sweep in range(steps):
            # Restarted trials give the gradients of their layer's block on only: a whole pass per sweep.
            current = Resume(carry=True, block_input=search.first_block_input) if restart else None
            if len(gradients) < num_layers or (restart and (sweep or current.block_input is None)):
                current = Resume(keep=0, carry=True) if restart else None
                _, gradients, gradient_sum = joint_score(
                    self.forward_func, self.layers, prepared, path, rule, internal_batch_size, current
                )
            improved = torch.zeros_like(jas, dtype=torch.bool)
            for layer in range(num_layers):
                candidates, best_predicted = _predicted_best_swaps(
                    activations, gradients, gradient_sum, path, layer, num_candidates
                )
                # The examples a swap may improve: the prediction is first order, so a margin below.
                tried = (best_predicted > jas - TRIAL_MARGIN * jas.abs()).nonzero()[:, 0]
                if len(tried):
                    # Row j * n + i of the trial batch is example tried[i] with candidate j at this layer.
                    index = tried.repeat(num_candidates)
                    trials = path[index]
                    trials[:, layer, 0] = candidates[tried].T.reshape(-1)
                    resume = None
                    if restart:
                        block_input, tangent = (
                            _rows_of(t, batch_size, index) for t in (current.block_input, current.tangent)
                        )
                        resume = Resume(start=layer, carry=True, block_input=block_input, tangent=tangent,
                                        past_attention=current.past_attention)  # fmt: skip
                    trial_jas, trial_gradients, trial_sum = joint_score(
                        self.forward_func, self.layers, select_examples(prepared, index), trials, rule,
                        internal_batch_size, resume,
                    )  # fmt: skip
                    best_jas, best = trial_jas.view(num_candidates, len(tried)).max(0)
                    better = best_jas > jas[tried]
                    winner = (best * len(tried) + torch.arange(len(tried), device=best.device))[better]
                    won = tried[better]
                    path = path.clone()
                    path[won, layer, 0] = candidates[won, best[better]]
                    jas = jas.clone()
                    jas[won] = best_jas[better]
                    gradients = {
                        i: g.index_put((won,), trial_gradients[i][winner]) if i in trial_gradients else g
                        for i, g in gradients.items()
                    }
                    gradient_sum = gradient_sum.index_put((won,), trial_sum[winner])
                    improved[won] = True
                if restart and layer + 1 < num_layers:  # the next trial starts from the path's block input
                    advance_block_input(self.layers, prepared, rule, path, layer, current)
            if not improved.any():
                break
        return path, jas  # a trial's JAS is the JAS of its path, like the greedy search's last pass


def _rows_of(rows: Optional[Tensor], batch_size: int, index: Tensor) -> Optional[Tensor]:
    """Node-major rows ``k * B + b`` for the batch of examples ``index``: rows ``k * N + j`` are ``index[j]``'s."""
    if rows is None:
        return None
    nodes, rest = rows.shape[0] // batch_size, rows.shape[1:]
    return rows.view(nodes, batch_size, *rest)[:, index].reshape(-1, *rest)


def _predicted_best_swaps(
    activations: List[Tensor], gradients: Dict[int, Tensor], gradient_sum: Tensor, path: Tensor, layer: int, count: int
) -> Tensor:
    """The ``count`` channels of ``layer`` whose swap into ``path`` gives the highest predicted JAS, ``(B, count)``,
    and the best one's prediction, ``(B,)``.

    With ``A`` and ``G`` the activation and gradient sums per token of the path without
    ``layer`` (``gradient_sum`` is ``G`` with it), swapping in channel ``c`` is predicted to
    give ``sum_tokens (A + a_c) * (G + g_c)``, where ``g_c`` is channel ``c``'s gradient in the
    path's pass. The current channel ranks last; ties go to the lowest index.
    """
    others = channel_masks(path[:, :, :1], activations)
    mine = {layer: others.pop(layer)}
    activation, gradient = activations[layer], gradients[layer]  # (B, T, C)
    predicted = extended_set_scores(
        set_sum(activations, others, activation), gradient_sum - set_sum(gradients, mine, activation), activation,
        gradient,
    )  # fmt: skip
    predicted = predicted.scatter(1, path[:, layer, :1], float("-inf"))
    channels = top_channels(predicted, count)
    return channels, predicted.gather(1, channels[:, :1])[:, 0]

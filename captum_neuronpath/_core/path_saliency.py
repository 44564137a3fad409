"""Where a neuron path looks in the input, and the quantity that map explains."""

import functools
from typing import Any, Callable, Dict, Optional, Sequence, Union

from captum._utils.common import _format_tensor_into_tuples, _is_tuple
from captum._utils.typing import BaselineType, TensorOrTupleOfTensorsGeneric
from captum.attr import GradientAttribution, IntegratedGradients, LayerIntegratedGradients
from captum.log import log_usage
from torch import Tensor
from torch.nn import Module

from captum_neuronpath._core.base import SiteAttribution
from captum_neuronpath._utils.hooks import describe_layer, site_hooks
from captum_neuronpath._utils.joint import channel_masks
from captum_neuronpath._utils.tokens import TokenType, check_token, expand_per_example, read_tokens, token_positions
from captum_neuronpath._utils.validation import (
    check_baselines,
    check_forward_func,
    check_layers,
    format_neuron_indices,
)


def path_activation(
    forward_func: Callable,
    layers: Sequence[Module],
    path: Union[Tensor, Sequence[int]],
    token: TokenType = 0,
) -> Callable[..., Tensor]:
    r"""
    The quantity :class:`PathSaliency` explains, as a function of the inputs: the sum of
    the path's neuron activations at the token set,

    .. math::

        f(x) = \sum_{l} \sum_{c \in p_l} \sum_{t} w_{l,t,c}(x).

    Use it wherever Captum needs the explained function, e.g.
    ``captum.metrics.infidelity(f, perturb, x, PathSaliency(...).attribute(x, path))``.

    Args:

        forward_func, layers: As for :class:`~captum_neuronpath.NeuronPath`.
        path (Tensor or sequence of int): ``(B, L)`` or ``(B, L, K)`` paths, one per
                    example (following Captum's batch expansion, see :doc:`concepts`), or
                    ``L`` ints shared by any batch.
        token: As for :class:`~captum_neuronpath.NeuronPath`.

    Returns:
        *Callable* ``f(*inputs, *additional_forward_args) -> Tensor`` of shape ``(B,)``,
        differentiable with respect to the inputs.

    Examples::

        >>> import timm, torch, captum_neuronpath as cnp
        >>> model = timm.create_model("vit_tiny_patch16_224", img_size=32,
        ...                           patch_size=8, depth=3, num_classes=10).eval()
        >>> f = cnp.path_activation(model, cnp.vit_mlp_layers(model), path=[5, 17, 2])
        >>> f(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2])
    """
    check_forward_func(forward_func)
    layers = check_layers(layers)
    token = check_token(token)
    return lambda *args: _summed_activations(forward_func, layers, token, path, args)


def _summed_activations(
    forward_func: Callable, layers: Sequence[Module], token: TokenType, path: Any, args: Sequence[Any]
) -> Tensor:
    """Run ``forward_func(*args)`` and sum the path's activations at the token set, ``(rows,)``."""
    recorded: Dict[int, Tensor] = {}
    with site_hooks(layers, {i: functools.partial(recorded.__setitem__, i) for i in range(len(layers))}):
        forward_func(*args)
    for i, layer in enumerate(layers):
        if i not in recorded:
            raise ValueError(f"{describe_layer(i, layer)} never ran: the forward pass finished without calling it")
    values = [
        read_tokens(recorded[i], token_positions(token, recorded[i].shape, describe_layer(i, layer)))
        for i, layer in enumerate(layers)
    ]
    rows = values[0].shape[0]
    indices = format_neuron_indices(path, "path", rows, [v.shape[-1] for v in values], values[0].device)
    masks = channel_masks(indices, values)
    return sum((values[i] * masks[i]).sum((1, 2)) for i in masks)


class PathSaliency(SiteAttribution, GradientAttribution):
    r"""
    Where a neuron path looks in the image: integrated gradients, with respect to the
    input, of the sum :math:`g(x)` of the path's neuron activations at the token set
    (:func:`path_activation`). The map has the inputs' shape and is complete: it sums to
    :math:`g(x) - g(\text{baseline})` up to the quadrature error (Captum's convergence
    delta). Pass one layer and its part of the path for a per-layer map.

    Token ids cannot be interpolated: for a language model, pass its embedding layer as
    ``input_layer`` and the map explains the embeddings instead, ``(B, T, d)``, as
    Captum's ``LayerIntegratedGradients`` does (the baseline is then the embedding of the
    ``baselines`` ids, token 0 by default).

    Examples::

        >>> import timm, torch, captum_neuronpath as cnp
        >>> model = timm.create_model("vit_tiny_patch16_224", img_size=32,
        ...                           patch_size=8, depth=3, num_classes=10).eval()
        >>> saliency = cnp.PathSaliency(model, cnp.vit_mlp_layers(model))
        >>> maps = saliency.attribute(torch.randn(2, 3, 32, 32), path=[5, 17, 2])
        >>> maps.shape
        torch.Size([2, 3, 32, 32])
    """

    def __init__(
        self,
        forward_func: Callable,
        layers: Sequence[Module],
        token: TokenType = 0,
        input_layer: Optional[Module] = None,
    ) -> None:
        r"""
        Args:

            forward_func, layers, token: As for :class:`~captum_neuronpath.NeuronPath`.
            input_layer (torch.nn.Module, optional): A layer whose output is interpolated
                        in place of the inputs, e.g. ``model.get_input_embeddings()``.
                        Default: ``None`` (the inputs)
        """
        if input_layer is not None and not isinstance(input_layer, Module):
            raise TypeError(f"input_layer must be a torch.nn.Module, got {type(input_layer).__name__}")
        super().__init__(forward_func, layers, token)
        self.input_layer = input_layer

    @log_usage()
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        path: Union[Tensor, Sequence[int]],
        baselines: BaselineType = None,
        additional_forward_args: Any = None,
        n_steps: int = 50,
        method: str = "gausslegendre",
        internal_batch_size: Optional[int] = None,
        return_convergence_delta: bool = False,
    ) -> Any:
        r"""
        Args:

            inputs (Tensor or tuple[Tensor, ...]): Inputs to explain, batch first.
            path (Tensor or sequence of int): As for :func:`path_activation`, e.g.
                        ``NeuronPath(...).attribute(...).path``.
            baselines (scalar, Tensor or tuple, optional): Captum baselines.
                        Default: ``None`` (zeros)
            additional_forward_args (Any, optional): Further arguments of
                        ``forward_func`` after the inputs.
                        Default: ``None``
            n_steps (int, optional): Quadrature nodes of the input integral.
                        Default: ``50``
            method (str, optional): Captum quadrature method.
                        Default: ``"gausslegendre"``
            internal_batch_size (int, optional): Rows per forward pass.
                        Default: ``None``
            return_convergence_delta (bool, optional): Also return Captum's
                        completeness gap per example.
                        Default: ``False``

        Returns:
            *Tensor* (or tuple, like ``inputs``) of **maps** with the inputs' shape (the
            ``input_layer``'s output shape when one is given); and
            with ``return_convergence_delta`` the ``(B,)`` gap
            ``g(x) - g(baseline) - sum(map)``.
        """
        formatted = _format_tensor_into_tuples(inputs)
        if baselines is not None:
            check_baselines(baselines, formatted)
        prepared, _, internal_batch_size = self._prepare(
            inputs, None, additional_forward_args, n_steps, method, internal_batch_size, check_target=False
        )
        if self.input_layer is None and not all(x.is_floating_point() for x in formatted):
            raise TypeError(
                "inputs hold integers (token ids?), which cannot be interpolated; pass the model's embedding "
                "layer as PathSaliency(..., input_layer=model.get_input_embeddings()) to explain the embeddings"
            )
        indices = self._neuron_indices(prepared, path, "path")
        token = self.token
        if isinstance(token, Tensor):
            token = expand_per_example(token, prepared.batch_size, "token")

        def explained(*args: Any) -> Tensor:
            *forward_args, path_rows, token_rows = args
            return _summed_activations(self.forward_func, self.layers, token_rows, path_rows, forward_args)

        # The path and per-example positions travel as the last additional arguments, so
        # Captum expands them with the inputs at every node.
        additional = tuple(prepared.additional_forward_args or ()) + (indices, token)
        integrated = (
            IntegratedGradients(explained)
            if self.input_layer is None
            else LayerIntegratedGradients(explained, self.input_layer)
        )
        return integrated.attribute(
            inputs if _is_tuple(inputs) else formatted[0],
            baselines=baselines,
            additional_forward_args=additional,
            n_steps=n_steps,
            method=method,
            internal_batch_size=internal_batch_size,
            return_convergence_delta=return_convergence_delta,
        )

    def has_convergence_delta(self) -> bool:
        return True

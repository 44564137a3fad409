"""What every attribution class of the library holds and does first."""

from typing import Any, Callable, List, Optional, Sequence, Tuple

from captum._utils.gradient import compute_gradients
from captum.attr import Attribution, GradientAttribution
from captum.attr._utils.attribution import InternalAttribution  # not exported by captum.attr
from torch import Tensor
from torch.nn import Module

from captum_neuronpath._core.engine import Prepared, prepare, warn_if_output_independent
from captum_neuronpath._utils.quadrature import Quadrature, quadrature
from captum_neuronpath._utils.tokens import TokenType, check_token
from captum_neuronpath._utils.validation import check_forward_func, check_int, check_layers, format_neuron_indices


class SiteAttribution:
    """Base of the public classes: a forward function, its neuron layers and the token set.

    Mixed in before Captum's ``LayerAttribution``/``NeuronAttribution``/
    ``GradientAttribution``, whose attributes it sets (``layer`` is the list of layers).

    ``family_plan``: where the model's family describes how its blocks run (timm and
    torchvision Vision Transformers), the substituted passes do less work for the same
    numbers (see the performance page). Set it to ``False`` on an instance to run every
    pass of that instance on the generic path, e.g. to compare the two.
    """

    family_plan: bool = True

    def __init__(self, forward_func: Callable, layers: Sequence[Module], token: TokenType = 0) -> None:
        r"""
        Args:

            forward_func (Callable): The model or a function of its inputs whose output,
                        selected with ``target``, gives one score per example, e.g.
                        ``lambda x: model(x).softmax(-1)`` as in the paper.
            layers (list[torch.nn.Module]): The neuron sites, input side first: modules
                        whose output channels are the neurons (e.g.
                        ``cnp.mlp_layers(model)``), or :class:`ModuleInput` for a
                        module's input.
            token (int, slice, sequence of int, Tensor or None, optional): The token
                        positions that carry the neurons in each layer's ``(B, T, C)``
                        output: one position, a token set, a ``(B,)`` tensor of one
                        position per example (e.g. ``cnp.last_token(attention_mask)``),
                        or ``None`` for ``(B, C)`` outputs.
                        Default: ``0`` (the class token)
        """
        check_forward_func(forward_func)
        self.layers: List[Module] = check_layers(layers)
        self.token = check_token(token)
        Attribution.__init__(self, forward_func)  # type: ignore[arg-type]
        if isinstance(self, InternalAttribution):
            InternalAttribution.__init__(self, forward_func, self.layers)
        if isinstance(self, GradientAttribution):
            self.gradient_func = compute_gradients

    def _prepare(
        self,
        inputs: Any,
        target: Any,
        additional_forward_args: Any,
        n_steps: int,
        method: str,
        internal_batch_size: Optional[int],
        check_target: bool = True,
    ) -> Tuple[Prepared, Quadrature, Optional[int]]:
        """The shared preamble: check the quadrature and batch size, then run the clean pass."""
        rule = quadrature(n_steps, method)
        if internal_batch_size is not None:
            check_int(internal_batch_size, "internal_batch_size", 1)
        prepared = prepare(
            self.forward_func, self.layers, self.token, inputs, target, additional_forward_args, check_target,
            self.family_plan,
        )  # fmt: skip
        return prepared, rule, internal_batch_size

    def _neuron_indices(self, prepared: Prepared, indices: Any, name: str, num_layers: Optional[int] = None) -> Tensor:
        """``indices`` (a path, a selector or a prefix of ``num_layers`` layers) as ``(B, L, K)``."""
        device = prepared.clean.activations[0].device
        return format_neuron_indices(indices, name, prepared.batch_size, prepared.num_channels[:num_layers], device)

    def _finish(self, prepared: Prepared, result: Tensor) -> Tensor:
        """``result`` in the inputs' dtype, after the warning for a degenerate model, if due."""
        warn_if_output_independent(prepared)
        return result.to(prepared.dtype)

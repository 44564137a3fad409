from contextlib import contextmanager
from typing import Any, Callable, Iterator, List, Optional, Sequence, Union

from captum._utils.common import _format_tensor_into_tuples, _is_tuple
from captum._utils.typing import BaselineType, TensorOrTupleOfTensorsGeneric
from captum.attr import IntegratedGradients
from captum.attr._utils.attribution import GradientAttribution
from captum.log import log_usage
from torch import Tensor
from torch.nn import Module

from captum_neuronpath._utils.joint import channel_masks
from captum_neuronpath._utils.substitution import clean_pass
from captum_neuronpath._utils.tokens import TokenType, check_token, read_tokens
from captum_neuronpath._utils.validation import check_inputs, check_layers, format_neuron_indices, quadrature


class PathSaliency(GradientAttribution):
    r"""
    Where a neuron path looks in the image: integrated gradients, with respect to the
    input, of the sum of the path's neuron activations at the token set,

    .. math::

        g(x) = \sum_{l} \sum_{c \in p_l} \sum_{t} w_{l,t,c}(x).

    The map has the inputs' shape and is complete: it sums to
    :math:`g(x) - g(\text{baseline})` up to the quadrature error (Captum's convergence
    delta). Pass one layer and its part of the path for a per-layer map.

    Args:

        forward_func (Callable): The model or a function of its inputs.
        layers (list[torch.nn.Module]): The layers the path runs through.
        token (int, slice, sequence of int or None, optional): The token set.
                    Default: ``0``

    Examples::

        >>> import timm, torch, captum_neuronpath as cnp
        >>> model = timm.create_model("vit_tiny_patch16_224", img_size=32,
        ...                           patch_size=8, depth=3, num_classes=10).eval()
        >>> saliency = cnp.PathSaliency(model, cnp.vit_mlp_layers(model))
        >>> maps = saliency.attribute(torch.randn(2, 3, 32, 32), path=[5, 17, 2])
        >>> maps.shape
        torch.Size([2, 3, 32, 32])
    """

    def __init__(self, forward_func: Callable, layers: Sequence[Module], token: TokenType = 0) -> None:
        self.layers: List[Module] = check_layers(layers)
        self.token = check_token(token)
        GradientAttribution.__init__(self, forward_func)

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
            path (Tensor or sequence of int): ``(B, L)`` or ``(B, L, K)`` paths, one per
                        example (e.g. ``NeuronPath(...).attribute(...).path``), or ``L``
                        ints shared by the batch.
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
            *Tensor* (or tuple, like ``inputs``) of **maps** with the inputs' shape; and
            with ``return_convergence_delta`` the ``(B,)`` gap
            ``g(x) - g(baseline) - sum(map)``.
        """
        quadrature(n_steps, method)
        formatted = _format_tensor_into_tuples(inputs)
        batch_size = check_inputs(formatted)
        clean = clean_pass(self.forward_func, self.layers, self.token, formatted, additional_forward_args)
        activations = clean.activations
        indices = format_neuron_indices(
            path, "path", batch_size, [a.shape[-1] for a in activations], activations[0].device
        )
        masks = channel_masks(indices, activations)

        def path_activation(*args: Any) -> Tensor:
            with self._recorded() as recorded:
                self.forward_func(*args)
            rows = recorded[0].shape[0]
            total = 0
            for layer, values in enumerate(recorded):
                # Row r of Captum's expanded batch is example r % B.
                mask = masks[layer].repeat(rows // batch_size, 1, 1)
                total = total + (read_tokens(values, clean.positions[layer]) * mask).sum((1, 2))
            return total

        return IntegratedGradients(path_activation).attribute(
            inputs if _is_tuple(inputs) else formatted[0],
            baselines=baselines,
            additional_forward_args=additional_forward_args,
            n_steps=n_steps,
            method=method,
            internal_batch_size=internal_batch_size,
            return_convergence_delta=return_convergence_delta,
        )

    def has_convergence_delta(self) -> bool:
        return True

    @contextmanager
    def _recorded(self) -> Iterator[List[Tensor]]:
        """Within the block, the list holds each layer's latest output, in layer order."""
        outputs: List[Optional[Tensor]] = [None] * len(self.layers)

        def hook_for(index: int) -> Callable:
            def hook(module: Module, args: Any, output: Tensor) -> None:
                outputs[index] = output

            return hook

        handles = [layer.register_forward_hook(hook_for(i)) for i, layer in enumerate(self.layers)]
        try:
            yield outputs  # type: ignore[misc]
        finally:
            for handle in handles:
                handle.remove()

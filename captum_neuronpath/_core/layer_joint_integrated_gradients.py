"""One greedy step of the neuron-path locator: every candidate's score."""

from typing import Any, Optional, Sequence, Union

from captum._utils.typing import TargetType, TensorOrTupleOfTensorsGeneric
from captum.attr import GradientAttribution, LayerAttribution
from captum.log import log_usage
from torch import Tensor

from captum_neuronpath._core.base import SiteAttribution
from captum_neuronpath._core.engine import candidate_scores
from captum_neuronpath._utils.quadrature import DEFAULT_METHOD, DEFAULT_N_STEPS
from captum_neuronpath._utils.validation import check_int


class LayerJointIntegratedGradients(SiteAttribution, LayerAttribution, GradientAttribution):
    r"""
    Candidate scores of one step of the layer-progressive neuron locator (Algorithm 1
    of Wang et al., "Discovering Influential Neuron Path in Vision Transformers",
    ICLR 2025, as the authors implement it).

    Given the path chosen so far in layers ``0 .. t-1`` (``path_prefix``), each
    channel ``c`` of layer ``t = layer_index`` is scored by the joint attribution of
    the prefix extended by ``c`` (its formula: :doc:`concepts`, the greedy locator). One
    forward and one backward pass at ``B * n_steps`` rows give every candidate's score.
    """

    @log_usage()
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        layer_index: int,
        path_prefix: Union[None, Tensor, Sequence[int]] = None,
        target: TargetType = None,
        additional_forward_args: Any = None,
        n_steps: int = DEFAULT_N_STEPS,
        method: str = DEFAULT_METHOD,
        internal_batch_size: Optional[int] = None,
    ) -> Tensor:
        r"""
        Args:

            inputs (Tensor or tuple[Tensor, ...]): Input for which the candidates are
                        scored, batch first.
            layer_index (int): The greedy step ``t``: index into ``layers`` of the
                        layer whose channels are scored.
            path_prefix (Tensor, sequence of int or None, optional): The path in
                        layers ``0 .. t-1``: a LongTensor ``(B, t)`` or ``(B, t, K)``,
                        or a sequence of ``t`` ints shared by the batch; rows follow
                        Captum's batch expansion as ``neuron_selector``'s do.
                        Default: ``None`` (only allowed for ``layer_index=0``)
            target, additional_forward_args, n_steps, method, internal_batch_size: As for
                        :meth:`NeuronJointIntegratedGradients.attribute`.

        Returns:
            *Tensor* of **scores**, shape ``(B, C)``: ``score_t(c)`` of every channel of
            layer ``t``.

        Examples::

            >>> import timm, torch, captum_neuronpath as cnp
            >>> model = timm.create_model("vit_tiny_patch16_224", img_size=32,
            ...                           patch_size=8, depth=3, num_classes=10).eval()
            >>> ljig = cnp.LayerJointIntegratedGradients(
            ...     lambda x: model(x).softmax(-1), cnp.vit_mlp_layers(model))
            >>> scores = ljig.attribute(torch.randn(2, 3, 32, 32), layer_index=2,
            ...                         path_prefix=[10, 300], target=3)
            >>> scores.shape
            torch.Size([2, 768])
        """
        layer_index = check_int(layer_index, "layer_index", 0, len(self.layers) - 1, IndexError)
        prepared, rule, internal_batch_size = self._prepare(
            inputs, target, additional_forward_args, n_steps, method, internal_batch_size
        )
        if path_prefix is None:
            if layer_index > 0:
                raise ValueError(
                    f"path_prefix is required for layer_index={layer_index}: the path in layers 0..{layer_index - 1}"
                )
            path_prefix = []
        prefix = self._neuron_indices(prepared, path_prefix, "path_prefix", num_layers=layer_index)
        scores = candidate_scores(
            self.forward_func, self.layers, prepared, layer_index, prefix, rule, internal_batch_size
        )
        return self._finish(prepared, scores)

"""The joint attribution score (JAS) of a neuron set spread over several layers."""

from typing import Any, Optional, Sequence, Union

from captum._utils.typing import TargetType, TensorOrTupleOfTensorsGeneric
from captum.attr import GradientAttribution, NeuronAttribution
from captum.log import log_usage
from torch import Tensor

from captum_neuronpath._core.base import SiteAttribution
from captum_neuronpath._core.engine import joint_score
from captum_neuronpath._utils.quadrature import DEFAULT_METHOD, DEFAULT_N_STEPS


class NeuronJointIntegratedGradients(SiteAttribution, NeuronAttribution, GradientAttribution):
    r"""
    Joint Attribution Score (JAS) of a set of neurons spread over several layers, from
    Wang et al., "Discovering Influential Neuron Path in Vision Transformers"
    (ICLR 2025), eq. (2)-(3).

    A neuron is one channel of one of ``layers`` at the token set ``token``. The model
    is run with every selected channel replaced by ``alpha`` times its clean activation
    (see :doc:`concepts` for the substitution and the formula). For a single neuron this
    is its integrated gradient; for several it is the paper's product of sums, not the
    sum of per-neuron scores.
    """

    @log_usage()
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        neuron_selector: Union[Tensor, Sequence[int]],
        target: TargetType = None,
        additional_forward_args: Any = None,
        n_steps: int = DEFAULT_N_STEPS,
        method: str = DEFAULT_METHOD,
        internal_batch_size: Optional[int] = None,
    ) -> Tensor:
        r"""
        Args:

            inputs (Tensor or tuple[Tensor, ...]): Input for which the neurons' joint
                        attribution is computed, batch first. A tuple is passed to
                        ``forward_func`` as positional arguments.
            neuron_selector (Tensor or sequence of int): The neuron set: a LongTensor
                        of shape ``(B, L)`` (one channel per layer and example) or
                        ``(B, L, K)`` (K channels per layer), or a sequence of ``L``
                        ints shared by the whole batch. ``L = len(layers)``. Rows follow
                        Captum's batch expansion (see :doc:`concepts`).
            target, additional_forward_args, n_steps, method, internal_batch_size: As for
                        :meth:`NeuronPath.attribute`; tensors of ``additional_forward_args``
                        whose first dimension is the batch are expanded with it.

        Returns:
            *Tensor* of **jas**, shape ``(B,)``: the joint attribution score of each
            example's neuron set, on the inputs' device and in their dtype.

        Examples::

            >>> import timm, torch, captum_neuronpath as cnp
            >>> model = timm.create_model("vit_tiny_patch16_224", img_size=32,
            ...                           patch_size=8, depth=3, num_classes=10).eval()
            >>> jig = cnp.NeuronJointIntegratedGradients(
            ...     lambda x: model(x).softmax(-1), cnp.vit_mlp_layers(model))
            >>> jas = jig.attribute(torch.randn(2, 3, 32, 32), neuron_selector=[5, 17, 2],
            ...                     target=torch.tensor([1, 7]))
            >>> jas.shape
            torch.Size([2])
        """
        prepared, rule, internal_batch_size = self._prepare(
            inputs, target, additional_forward_args, n_steps, method, internal_batch_size
        )
        indices = self._neuron_indices(prepared, neuron_selector, "neuron_selector")
        jas = joint_score(self.forward_func, self.layers, prepared, indices, rule, internal_batch_size)[0]
        return self._finish(prepared, jas)

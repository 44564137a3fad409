"""The paths the paper compares against, and a random null.

Each baseline picks, per example and layer, the channel(s) with the largest score of its
own kind at the token set, then reports the joint attribution score of that path, so
that its result is a :class:`NeuronPathResult` like :class:`NeuronPath`'s.
"""

import inspect
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Type

import torch
from captum._utils.typing import TargetType, TensorOrTupleOfTensorsGeneric
from captum.attr import InternalInfluence, LayerAttribution
from captum.log import log_usage
from torch import Tensor
from torch.nn import Module

from captum_neuronpath._core.base import SiteAttribution
from captum_neuronpath._core.engine import Prepared, joint_score
from captum_neuronpath._core.result import NeuronPathResult
from captum_neuronpath._utils.joint import stack_padded, top_channels
from captum_neuronpath._utils.quadrature import DEFAULT_METHOD, DEFAULT_N_STEPS, Quadrature
from captum_neuronpath._utils.sites import ModuleInput, module_of
from captum_neuronpath._utils.tokens import TokenType, read_tokens
from captum_neuronpath._utils.validation import check_baselines, check_int

# The quadrature and batch size of the path's JAS, in the order of SiteAttribution._prepare; a Captum
# layer method gets them, and the target and additional arguments, where its attribute() accepts them.
_QUADRATURE = ("n_steps", "method", "internal_batch_size")
_SHARED = ("target", "additional_forward_args", *_QUADRATURE)


class _PathBaseline(SiteAttribution, LayerAttribution):
    """Shared ``attribute()``: pick channels layer by layer, then score the path's JAS."""

    def _start(self, prepared: Prepared, method_kwargs: Dict[str, Any]) -> None:
        """Check ``method_kwargs`` before the layers are scored (a class without a Captum method takes none)."""
        extra = sorted(set(method_kwargs) - set(_QUADRATURE))
        if extra:
            raise TypeError(f"{type(self).__name__}.attribute() got unexpected keyword arguments {extra}")

    def _channel_scores(self, prepared: Prepared, layer_index: int, method_kwargs: Dict[str, Any]) -> Tensor:
        """``(B, C)`` scores whose largest entries make the path at ``layer_index``."""
        raise NotImplementedError

    def _scores(
        self, inputs: Any, target: TargetType, additional_forward_args: Any, method_kwargs: Dict[str, Any]
    ) -> Tuple[Prepared, Quadrature, Optional[int], List[Tensor]]:
        """The clean pass, the quadrature, the batch size and every layer's ``(B, C)`` channel scores."""
        prepared, rule, internal_batch_size = self._prepare(
            inputs, target, additional_forward_args, *(method_kwargs[k] for k in _QUADRATURE)
        )
        self._start(prepared, method_kwargs)
        scores = [self._channel_scores(prepared, index, method_kwargs) for index in range(len(self.layers))]
        return prepared, rule, internal_batch_size, scores

    def channel_scores(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        target: TargetType = None,
        additional_forward_args: Any = None,
        **method_kwargs: Any,
    ) -> Tensor:
        r"""
        The per-neuron scores this baseline ranks by, at every layer: the clean
        activation (:class:`ActivationPath`), or the Captum method's attribution at the
        layer (:class:`LayerMethodPath`), summed over the token set. Each layer is scored
        alone, with the rest of the network running normally, so these compare with
        ``NeuronPath``'s ``layer_scores`` (see :func:`~captum_neuronpath.metrics.rank_agreement`).

        Args:

            inputs, target, additional_forward_args: As for
                        :meth:`~captum_neuronpath.NeuronPath.attribute`.
            **method_kwargs: ``n_steps``, ``method``, ``internal_batch_size`` and, for a
                        :class:`LayerMethodPath`, further keywords of its Captum method.

        Returns:
            *Tensor* ``(B, L, C)``, ``NaN`` past a narrower layer's last channel.

        Examples::

            >>> import timm, torch, captum, captum_neuronpath as cnp
            >>> model = timm.create_model("vit_tiny_patch16_224", img_size=32,
            ...                           patch_size=8, depth=2, num_classes=3).eval()
            >>> lig = cnp.LayerMethodPath(captum.attr.LayerIntegratedGradients,
            ...                           lambda x: model(x).softmax(-1), cnp.vit_mlp_layers(model))
            >>> lig.channel_scores(torch.randn(2, 3, 32, 32), target=1, n_steps=4).shape
            torch.Size([2, 2, 768])
        """
        kwargs = {"n_steps": DEFAULT_N_STEPS, "method": DEFAULT_METHOD, "internal_batch_size": None, **method_kwargs}
        scores = self._scores(inputs, target, additional_forward_args, kwargs)[-1]
        return stack_padded([layer_scores.detach() for layer_scores in scores])

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
        **method_kwargs: Any,
    ) -> NeuronPathResult:
        r"""
        Args:

            inputs, target, additional_forward_args, n_steps, method, internal_batch_size: As for
                        :meth:`~captum_neuronpath.NeuronPath.attribute`; the quadrature is the
                        path's JAS's, and a :class:`LayerMethodPath`'s Captum method's too
                        where its ``attribute()`` takes them.
            top_k (int, optional): Channels kept per layer.
                        Default: ``1``
            **method_kwargs: For a :class:`LayerMethodPath`, further keywords of
                        ``layer_method(...).attribute()``, e.g. ``baselines`` (the one
                        keyword of :class:`InfluencePatternPath`); the other baselines take none.

        Returns:
            :class:`NeuronPathResult` with ``path`` ``(B, L)`` (``(B, L, K)`` when
            ``top_k > 1``) and ``jas`` ``(B,)``; ``layer_scores`` is ``None``.
        """
        kwargs = dict(n_steps=n_steps, method=method, internal_batch_size=internal_batch_size, **method_kwargs)
        prepared, rule, internal_batch_size, scores = self._scores(inputs, target, additional_forward_args, kwargs)
        top_k = check_int(top_k, "top_k", 1, min(prepared.num_channels))
        device = prepared.clean.activations[0].device
        path = torch.stack([top_channels(layer_scores, top_k).to(device) for layer_scores in scores], dim=1)
        jas = joint_score(self.forward_func, self.layers, prepared, path, rule, internal_batch_size)[0]
        return NeuronPathResult(path=path if top_k > 1 else path.squeeze(-1), jas=self._finish(prepared, jas))


class ActivationPath(_PathBaseline):
    r"""
    The paper's Activation baseline: in every layer the channel with the largest clean
    activation, summed over the token set.

    Examples::

        >>> import timm, torch, captum_neuronpath as cnp
        >>> model = timm.create_model("vit_tiny_patch16_224", img_size=32,
        ...                           patch_size=8, depth=3, num_classes=10).eval()
        >>> res = cnp.ActivationPath(lambda x: model(x).softmax(-1), cnp.vit_mlp_layers(model)
        ...                          ).attribute(torch.randn(2, 3, 32, 32), target=4)
        >>> res.path.shape, res.jas.shape
        (torch.Size([2, 3]), torch.Size([2]))
    """

    def _channel_scores(self, prepared: Prepared, layer_index: int, method_kwargs: Dict[str, Any]) -> Tensor:
        return prepared.clean.activations[layer_index].sum(1)


class LayerMethodPath(_PathBaseline):
    r"""
    A path from any Captum layer attribution method: in every layer the channel whose
    attribution, summed over the token set, is largest.

    Examples::

        >>> import timm, torch, captum, captum_neuronpath as cnp
        >>> model = timm.create_model("vit_tiny_patch16_224", img_size=32,
        ...                           patch_size=8, depth=3, num_classes=10).eval()
        >>> baseline = cnp.LayerMethodPath(captum.attr.LayerGradientXActivation,
        ...                                lambda x: model(x).softmax(-1), cnp.vit_mlp_layers(model))
        >>> baseline.attribute(torch.randn(2, 3, 32, 32), target=4).path.shape
        torch.Size([2, 3])
    """

    def __init__(
        self,
        layer_method: Type[LayerAttribution],
        forward_func: Callable,
        layers: Sequence[Module],
        token: TokenType = 0,
    ) -> None:
        r"""
        Args:

            layer_method (type): A Captum layer attribution class built as
                        ``layer_method(forward_func, layer)``, e.g. ``LayerConductance``,
                        ``LayerIntegratedGradients``, ``LayerGradientXActivation``.
            forward_func, layers, token: As for :class:`~captum_neuronpath.NeuronPath`.
        """
        if not (isinstance(layer_method, type) and issubclass(layer_method, LayerAttribution)):
            raise TypeError(
                f"layer_method must be a Captum LayerAttribution class such as captum.attr.LayerConductance, "
                f"got {layer_method!r}"
            )
        super().__init__(forward_func, layers, token)
        #: The Captum attribution object of each layer (of the module, for a ModuleInput site).
        self.layer_methods = [layer_method(forward_func, module_of(layer)) for layer in self.layers]

    def _start(self, prepared: Prepared, method_kwargs: Dict[str, Any]) -> None:
        pass  # the Captum method checks its own keywords

    def _channel_scores(self, prepared: Prepared, layer_index: int, method_kwargs: Dict[str, Any]) -> Tensor:
        captum_method = self.layer_methods[layer_index]
        accepted = inspect.signature(captum_method.attribute).parameters
        if isinstance(self.layers[layer_index], ModuleInput):
            method_kwargs = dict(method_kwargs, attribute_to_layer_input=True)
        # target and additional_forward_args are attribute()'s own parameters, never in method_kwargs
        shared = dict(method_kwargs, target=prepared.target, additional_forward_args=prepared.additional_forward_args)
        kwargs = {k: v for k, v in shared.items() if k not in _SHARED or k in accepted}
        inputs = prepared.inputs if len(prepared.inputs) > 1 else prepared.inputs[0]
        attribution = captum_method.attribute(inputs, **kwargs)
        if isinstance(attribution, tuple):
            attribution = attribution[0]
        return read_tokens(attribution, prepared.clean.positions[layer_index]).sum(1)


class InfluencePatternPath(LayerMethodPath):
    r"""
    The paper's Influence Pattern baseline, as the authors adapt it: the input is
    interpolated from ``baselines`` and, in every layer, the channel with the largest
    integrated gradient with respect to that layer's activation (later layers computed
    normally) is chosen. This is Captum's ``InternalInfluence`` at each layer, read at
    the token set, with the same ``n_steps`` and ``method`` as the path's JAS.
    ``attribute()``'s keyword ``baselines`` (Captum's forms; default ``None``, zeros)
    is where the input is interpolated from.

    Examples::

        >>> import timm, torch, captum_neuronpath as cnp
        >>> model = timm.create_model("vit_tiny_patch16_224", img_size=32,
        ...                           patch_size=8, depth=3, num_classes=10).eval()
        >>> res = cnp.InfluencePatternPath(lambda x: model(x).softmax(-1), cnp.vit_mlp_layers(model)
        ...                                ).attribute(torch.randn(2, 3, 32, 32), target=4, n_steps=20)
        >>> res.path.shape
        torch.Size([2, 3])
    """

    def __init__(self, forward_func: Callable, layers: Sequence[Module], token: TokenType = 0) -> None:
        r"""
        Args:

            forward_func, layers, token: As for :class:`~captum_neuronpath.NeuronPath`.
        """
        super().__init__(InternalInfluence, forward_func, layers, token)

    def _start(self, prepared: Prepared, method_kwargs: Dict[str, Any]) -> None:
        if any(not x.is_floating_point() for x in prepared.inputs if isinstance(x, Tensor)):
            raise TypeError(
                "InfluencePatternPath interpolates the inputs, and integer inputs (token ids?) cannot be "
                "interpolated; for a language model compare with ActivationPath, RandomPath or "
                "LayerMethodPath(captum.attr.LayerIntegratedGradients, ...) instead"
            )
        if method_kwargs.get("baselines") is not None:
            check_baselines(method_kwargs["baselines"], prepared.inputs)


class RandomPath(_PathBaseline):
    r"""
    A seeded null baseline the paper lacks: channels drawn uniformly at random (distinct
    within a layer when ``top_k > 1``), independently per example and layer. The same
    seed and batch give the same paths.

    Examples::

        >>> import timm, torch, captum_neuronpath as cnp
        >>> model = timm.create_model("vit_tiny_patch16_224", img_size=32,
        ...                           patch_size=8, depth=3, num_classes=10).eval()
        >>> null = cnp.RandomPath(lambda x: model(x).softmax(-1), cnp.vit_mlp_layers(model), seed=1)
        >>> null.attribute(torch.randn(2, 3, 32, 32), target=4).path.shape
        torch.Size([2, 3])
    """

    def __init__(self, forward_func: Callable, layers: Sequence[Module], token: TokenType = 0, seed: int = 0) -> None:
        r"""
        Args:

            forward_func, layers, token: As for :class:`~captum_neuronpath.NeuronPath`.
            seed (int, optional): Seed of the draws.
                        Default: ``0``
        """
        super().__init__(forward_func, layers, token)
        self.seed = check_int(seed, "seed", -(2**63), 2**64 - 1)  # torch.Generator's range
        self._generator: Optional[torch.Generator] = None

    def _start(self, prepared: Prepared, method_kwargs: Dict[str, Any]) -> None:
        super()._start(prepared, method_kwargs)
        self._generator = torch.Generator().manual_seed(self.seed)

    def _channel_scores(self, prepared: Prepared, layer_index: int, method_kwargs: Dict[str, Any]) -> Tensor:
        batch_size, _, num_channels = prepared.clean.activations[layer_index].shape
        return torch.rand(batch_size, num_channels, generator=self._generator)

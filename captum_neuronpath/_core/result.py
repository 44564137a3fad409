"""The result every path locator returns."""

from dataclasses import dataclass
from typing import Optional

from torch import Tensor


@dataclass
class NeuronPathResult:
    """A located neuron path per example, from :class:`NeuronPath` or a baseline.

    Attributes:
        path (Tensor): LongTensor ``(B, L)``, the chosen channel of each layer, or
                    ``(B, L, K)`` when ``top_k = K > 1`` (best first).
        jas (Tensor): ``(B,)``, the joint attribution score of each whole path.
        layer_scores (Tensor or None): ``(B, L, C)``, the candidate score of every
                    channel at every greedy step (``NaN`` past a layer's last channel
                    when layers differ in width); ``None`` for the baselines, which
                    take no greedy steps.
    """

    path: Tensor
    jas: Tensor
    layer_scores: Optional[Tensor] = None

    def chosen_scores(self) -> Tensor:
        r"""
        Each greedy step's score of the neuron it chose (the first of ``top_k``).

        Returns:
            *Tensor* ``(B, L)``.

        Raises:
            ValueError: when the result has no ``layer_scores`` (a baseline's).

        Examples::

            >>> import torch, captum_neuronpath as cnp
            >>> result = cnp.NeuronPathResult(path=torch.tensor([[1, 0]]), jas=torch.tensor([0.5]),
            ...                               layer_scores=torch.tensor([[[0.1, 0.4], [0.3, 0.2]]]))
            >>> result.chosen_scores()
            tensor([[0.4000, 0.3000]])
        """
        if self.layer_scores is None:
            raise ValueError(
                "this result has no layer_scores: only NeuronPath's greedy search scores candidates; "
                "a baseline's result holds path and jas alone"
            )
        path = self.path if self.path.dim() == 2 else self.path[..., 0]
        return self.layer_scores.gather(2, path.unsqueeze(-1)).squeeze(-1)

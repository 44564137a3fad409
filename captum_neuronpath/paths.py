r"""
The records of ``neuronpath extract`` as tensors: :func:`load` reads ``FILE`` (one JSON object
per input) and ``FILE.meta.json`` (the run's settings and the ``layers``, ``token`` and
``class_names`` of the paths), as the command-line page describes them.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import torch
from torch import Tensor

__all__ = ["Paths", "load"]

REQUIRED = ("index", "label", "target", "path", "jas")


@dataclass
class Paths:
    r"""
    The paths of a data set, one row per input, in the file's order.

    Attributes:

        paths (LongTensor): ``(N, L)``, or ``(N, L, K)`` with ``--top-k K`` > 1.
        jas (Tensor): ``(N,)`` joint attribution score of each path.
        labels (LongTensor): ``(N,)`` each input's label.
        targets (LongTensor): ``(N,)`` the class each path explains.
        predictions (LongTensor): ``(N,)`` the model's prediction (``-1`` where not recorded).
        probabilities (Tensor): ``(N,)`` the model's probability of the target (NaN where not recorded).
        indices (LongTensor): ``(N,)`` each input's index in the data set.
        files (list): each input's file inside an image folder, or ``None``.
        meta (dict): the contents of ``FILE.meta.json`` (empty when there is none).
        errors (dict): index -> message of each input recorded as an error, left out of the rows.
    """

    paths: Tensor
    jas: Tensor
    labels: Tensor
    targets: Tensor
    predictions: Tensor
    probabilities: Tensor
    indices: Tensor
    files: List[Optional[str]]
    meta: Dict[str, object] = field(default_factory=dict)
    errors: Dict[int, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def num_layers(self) -> int:
        """``L``: the layers of each path."""
        return self.paths.shape[1]

    @property
    def layer_widths(self) -> List[int]:
        """Each layer's number of neurons, from the meta; else one more than the largest neuron seen."""
        layers = self.meta.get("layers")
        if layers:
            return [int(layer["width"]) for layer in layers]
        if len(self) == 0:
            return [0] * self.num_layers
        seen = self.paths if self.paths.dim() == 3 else self.paths[..., None]
        return (seen.amax(dim=(0, 2)) + 1).tolist()

    @property
    def num_channels(self) -> int:
        """The widest layer's number of neurons, the ``num_channels`` of
        :func:`~captum_neuronpath.metrics.neuron_frequency`."""
        return max(self.layer_widths, default=0)

    @property
    def layer_names(self) -> List[str]:
        """Each layer's module name, from the meta; else ``"layer 0"``, ``"layer 1"``, ..."""
        layers = self.meta.get("layers") or [{}] * self.num_layers
        return [str(layer.get("name") or f"layer {i}") for i, layer in enumerate(layers)]

    @property
    def class_names(self) -> List[str]:
        """The name of every class, from the meta; else the class indices up to the largest seen."""
        names = [str(name) for name in self.meta.get("class_names") or []]
        seen = max((int(t.max()) + 1 for t in (self.labels, self.targets, self.predictions) if len(t)), default=0)
        return names + [str(i) for i in range(len(names), seen)]


def load(file: Union[str, Path]) -> Paths:
    r"""
    Read the records of ``neuronpath extract`` and their meta, streaming the file.

    Args:

        file (str or Path): The JSON Lines file written by ``neuronpath extract --out FILE``;
                    ``FILE.meta.json`` is read beside it when it exists.

    Returns:
        :class:`Paths`: the records as tensors, records marked as errors left out and
        counted in ``errors``.

    Raises:
        FileNotFoundError: ``file`` does not exist.
        ValueError: a line is not a record; the message names the file and the line.

    Examples::

        >>> import json, pathlib, tempfile
        >>> from captum_neuronpath import paths
        >>> file = pathlib.Path(tempfile.mkdtemp()) / "paths.jsonl"
        >>> _ = file.write_text(
        ...     json.dumps({"index": 0, "label": 1, "target": 1, "prediction": 1, "path": [3, 0], "jas": 0.5}) + "\n"
        ...     + json.dumps({"index": 1, "error": "image cannot be read"}) + "\n")
        >>> records = paths.load(file)
        >>> records.paths, records.labels, len(records.errors)
        (tensor([[3, 0]]), tensor([1]), 1)
    """
    file = Path(file)
    if not file.is_file():
        raise FileNotFoundError(f"paths file {file} does not exist or is not a file")
    meta_file = file.with_name(file.name + ".meta.json")
    meta = _json(meta_file.read_text(), str(meta_file)) if meta_file.exists() else {}
    if not isinstance(meta, dict):
        raise ValueError(f"{meta_file} must hold a JSON object, got {type(meta).__name__}")
    defaults = {"prediction": -1, "probability": float("nan")}  # where a record does not say
    columns: Dict[str, list] = {key: [] for key in (*REQUIRED, *defaults)}
    files, errors = [], {}
    with open(file, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.endswith(b"\n"):
                break  # a write cut short by a crash: not a record
            if not line.strip():
                continue
            record = _record(line, file, number)
            if "error" in record:
                errors[int(record["index"])] = str(record["error"])
                continue
            files.append(record.get("file"))
            for key, values in columns.items():
                values.append(record.get(key, defaults.get(key)))
    try:
        path_rows = torch.tensor(columns["path"], dtype=torch.long)
    except (ValueError, TypeError, RuntimeError) as error:
        raise ValueError(f"{file}: the paths must all have the same number of layers and neurons ({error})") from None
    if not files:
        path_rows = torch.zeros(0, len(meta.get("layers") or []), dtype=torch.long)
    column = {key: torch.tensor(values, dtype=torch.float64 if key in ("jas", "probability") else torch.long)
              for key, values in columns.items() if key != "path"}  # fmt: skip
    return Paths(
        path_rows, column["jas"], column["label"], column["target"], column["prediction"], column["probability"],
        column["index"], files, meta, errors,
    )  # fmt: skip


def _record(line: bytes, file: Path, number: int) -> Dict[str, object]:
    record = _json(line, f"{file} line {number}")
    if not isinstance(record, dict) or "index" not in record:
        raise ValueError(f"{file} line {number} is not a record of neuronpath extract (an object with an index)")
    if "error" not in record:
        missing = [key for key in REQUIRED if key not in record]
        if missing:
            raise ValueError(f"{file} line {number} lacks {', '.join(missing)}")
    return record


def _json(text: Union[str, bytes], where: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as error:
        raise ValueError(f"{where} is not JSON: {error}") from None

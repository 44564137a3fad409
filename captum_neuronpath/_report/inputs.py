"""What the explorer shows of an input, read from the data the records came from (``settings.data``) when
it is still there: a thumbnail of an image, or the text (else the ids) of a token sequence."""

import base64
import io
from pathlib import Path
from typing import Callable, Dict, Optional

from torch import Tensor

from captum_neuronpath._cli.loading import UnreadableImage, load_text_data, read_image
from captum_neuronpath.paths import Paths

THUMBNAIL_SIZE = 48
SHOWN_TOKENS = 24


def thumbnail(image) -> str:
    """A PIL image, downsized to at most ``THUMBNAIL_SIZE`` pixels a side, as a JPEG data URL."""
    image = image.convert("RGB")
    image.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def tensor_image(image: Tensor):
    """A ``(C, H, W)`` tensor as a PIL image, its values stretched to the full range."""
    from PIL import Image

    image = image.detach().float()
    image = (image - image.min()) / (image.max() - image.min()).clamp(min=1e-12)
    pixels = (image * 255).round().byte()
    if pixels.shape[0] == 1:
        return Image.fromarray(pixels[0].numpy(), mode="L")
    return Image.fromarray(pixels[:3].permute(1, 2, 0).contiguous().numpy(), mode="RGB")


def data_source(paths: Paths, tokenizer: Optional[str] = None) -> Optional[Callable[[int], Dict[str, str]]]:
    """``position -> {"thumbnail": URL}`` or ``{"text": ...}`` for the records' data, or ``None`` when it is gone."""
    data = (paths.meta.get("settings") or {}).get("data")
    if not data or not Path(data).exists():
        return None
    data = Path(data)
    if data.is_dir():
        return lambda position: _folder_image(data, paths.files[position])
    if data.suffix == ".safetensors":
        from safetensors import safe_open

        handle = safe_open(str(data), framework="pt")
        if "images" not in handle.keys():
            return None
        images = handle.get_slice("images")
        return lambda position: {"thumbnail": thumbnail(tensor_image(images[int(paths.indices[position])]))}
    if data.suffix == ".jsonl":
        decode = _decoder(tokenizer)
        try:
            sequences = dict(enumerate(ids.tolist() for ids in load_text_data(data)[0]))
        except ValueError:  # no longer a file of token sequences: shown without texts
            return None
        return lambda position: {"text": decode(sequences.get(int(paths.indices[position]), []))}
    return None


def _folder_image(root: Path, file: Optional[str]) -> Dict[str, str]:
    try:
        return {"thumbnail": thumbnail(read_image(str(root / file)))} if file else {}
    except UnreadableImage:  # gone or unreadable since the extract: shown without a thumbnail
        return {}


def _decoder(tokenizer: Optional[str]) -> Callable[[list], str]:
    """The text of the last ``SHOWN_TOKENS`` token ids: decoded by ``tokenizer`` (a Hugging Face name), else the ids."""
    if tokenizer is None:
        return lambda ids: ("... " if len(ids) > SHOWN_TOKENS else "") + " ".join(map(str, ids[-SHOWN_TOKENS:]))
    try:
        from transformers import AutoTokenizer

        loaded = AutoTokenizer.from_pretrained(tokenizer)
    except (ImportError, OSError, ValueError) as error:
        raise ValueError(f"--tokenizer {tokenizer} cannot be loaded: {error}") from error
    return lambda ids: ("..." if len(ids) > SHOWN_TOKENS else "") + loaded.decode(ids[-SHOWN_TOKENS:])


def stacked(images: Tensor) -> Callable[[int], Dict[str, str]]:
    """A source over an ``(N, C, H, W)`` tensor, by record position (the demo's test images)."""
    return lambda position: {"thumbnail": thumbnail(tensor_image(images[position]))}

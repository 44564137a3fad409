"""``index.html``: the path explorer, one self-contained file rendered from ``explorer.html.j2`` that draws
every panel in the browser from the records and summaries it embeds (nothing fetched)."""

from pathlib import Path
from typing import Callable, Dict, Optional

from captum_neuronpath.paths import Paths

SHOWN_NEURONS = 5  # most frequent neurons per layer on a class's panel
THUMBNAILS = 4000  # more inputs than this: only a few examples per class get a thumbnail or text


def render_page(
    paths: Paths, report: Dict[str, object], source: Optional[Callable[[int], Dict[str, str]]], title: str
) -> str:
    """The explorer's HTML; ``source`` gives the thumbnail or text of a record (see :mod:`.inputs`)."""
    import jinja2

    classes = report["classes"]
    examples = max(2, min(12, THUMBNAILS // max(len(classes), 1)))
    if len(paths) <= THUMBNAILS:
        shown = list(range(len(paths)))
    else:  # the first few inputs of each class
        shown = [p for c in classes for p in (paths.labels == c["class"]).nonzero()[:examples, 0].tolist()]
    described = {} if source is None else {position: source(position) for position in shown}
    names = paths.class_names
    labels = sorted({*paths.labels.tolist(), *(p for p in paths.predictions.tolist() if p >= 0)})
    data = {
        "layers": report["layers"],
        "top_k": report["top_k"],
        "examples": examples,
        "names": {label: names[label] for label in labels},
        "classes": [
            {  # the report's summary of the class, shorter
                **c,
                "jas": _rounded(c["jas"]),
                "top_neurons": [
                    [[channel, round(f, 3)] for channel, f in layer[:SHOWN_NEURONS]] for layer in c["top_neurons"]
                ],
                "nearest": [[other, round(s, 3)] for other, s in c["nearest"]],
            }
            for c in classes
        ],
        "shared_neurons": report["shared_neurons"][:20],
        "records": {
            "index": paths.indices.tolist(),
            "label": paths.labels.tolist(),
            "prediction": paths.predictions.tolist(),
            "jas": [round(v, 4) for v in paths.jas.tolist()],
            "path": paths.paths.flatten().tolist(),
            "file": paths.files if any(paths.files) else [None] * len(paths),
        },
        # "thumbnails" and "texts": {position: its thumbnail or text}
        **{kind + "s": {p: one[kind] for p, one in described.items() if kind in one} for kind in ("thumbnail", "text")},
    }
    explorer = (Path(__file__).parent / "explorer.html.j2").read_text(encoding="utf-8")
    template = jinja2.Template(explorer, autoescape=True, keep_trailing_newline=True)
    summary = (
        f"{report['inputs']} inputs, {len(classes)} classes, {len(report['layers'])} layers"
        + (f", {report['errors']} inputs left out as errors" if report["errors"] else "")
        + (f"; {report['predictions']['correct']} predicted correctly" if report["predictions"]["recorded"] else "")
    )
    return template.render(title=title, summary=summary, data=data)


def _rounded(value):
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {key: _rounded(inner) for key, inner in value.items()}
    return value

"""``neuronpath extract``: the neuron path of every image or token sequence of a data set, as JSON Lines.

Each input gets one line of ``FILE`` (``--out``), in index order::

    {"index": 0, "file": "cat/001.png", "label": 3, "fingerprint": "sha256:...", "target": 3,
     "prediction": 3, "probability": 0.91, "path": [17, 250, 3, ...], "jas": 0.41}

``path`` is the located neuron of each MLP layer (a list of ``top_k`` neurons per layer
when ``--top-k`` > 1), ``jas`` its joint attribution score, ``target`` the class explained
(the label, or the model's prediction with ``--target predicted``), ``probability`` the
model's softmax probability of the target, ``file`` the image's path inside the image
folder (``null`` for a safetensors or JSON Lines file). For token sequences (``--data
FILE.jsonl``, one ``{"input_ids": [...], "target": ID}`` per line) ``label`` is the line's
``target``, the expected next token, and the path is located at each sequence's last
token through the model's next-token probabilities. With ``--layer-scores N`` a record also holds,
per layer, the N best candidates of the greedy step (``layer_candidates``) and their
scores (``layer_scores``), best first. ``fingerprint`` identifies the input's bytes, so a
resumed run computes again the records of inputs that changed. With ``--skip-unreadable``
an image that cannot be read gets ``{"index", "file", "label", "fingerprint", "error"}``
and no path.

The modules, one concern each:

- :mod:`.command`: the job itself (set up, explain, merge); its arguments are in
  :mod:`captum_neuronpath._cli.extract`.
- :mod:`.fingerprint`: the fingerprints of the model and of each input.
- :mod:`.explain`: one batch of inputs to its records.
- :mod:`.store`: the output files (``FILE``, ``FILE.meta.json``, the shards ``FILE.rankR``):
  reading, appending, merging, and the check that a resumed run continues the same run.
- :mod:`.distributed`: the torchrun process group and the assignment of batches to ranks.

Loading the model, the data and user callables lives in :mod:`captum_neuronpath._cli.loading`.
The only public surface is the command line (:mod:`captum_neuronpath._cli`).
"""

"""``neuronpath extract``: the neuron path of every image or token sequence of a data set, as JSON Lines,
one record per input in index order; docs/command_line.md describes the records, the resume and the
distributed run.

The modules, one concern each: :mod:`.command` (the job: set up, explain, merge; its arguments are in
:mod:`captum_neuronpath._cli.extract`), :mod:`.fingerprint` (of the model and of each input),
:mod:`.explain` (one batch of inputs to its records), :mod:`.store` (``FILE``, ``FILE.meta.json`` and
the shards ``FILE.rankR``), :mod:`.distributed` (the torchrun process group and who explains which
batch), :mod:`.sites` (``--layers`` and ``--token``), :mod:`.description` (what the meta says of the
paths). Loading the model, the data and user callables lives in :mod:`captum_neuronpath._cli.loading`.
"""

"""``neuronpath extract``: the neuron path of every image or token sequence of a data set, as JSON Lines,
one record per input in index order (docs/command_line.md); the job is :mod:`.command`, one concern a module.
"""

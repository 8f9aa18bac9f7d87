"""The old home of :class:`~reward_circuits.neurons.NeuronSet`: it lives in :mod:`reward_circuits.neurons`
now (a leaf below the intervention engine), and this module keeps
``from reward_circuits.analysis.neurons import NeuronSet`` working in notebooks written against it."""

from ..neurons import NeuronSet, expected_random_iou, iou

__all__ = ["NeuronSet", "expected_random_iou", "iou"]

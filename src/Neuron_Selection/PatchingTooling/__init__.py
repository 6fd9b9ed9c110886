"""``from Neuron_Selection.PatchingTooling import PatchingExperiment`` as in the neuron-patching guide;
the class is :class:`reasonlens.agents.experiment.PatchingExperiment`."""

from reasonlens.agents.experiment import PatchingExperiment

__all__ = ["PatchingExperiment"]

"""Spiking neurons (LTC, ALIF, LIF, BRF) and leaky readouts: pure step functions and modules (THEORY.md §2)."""
from .cells import ALIF, BRF, LIF, LTC, NEURON_CLASSES, SpikingCell, get_neuron
from .conv import ConvLTC, ConvSpec, parse_conv_spec
from .functional import (
    alif_step,
    brf_divergence_boundary,
    brf_step,
    conv_ltc_step,
    fixed_readout_step,
    lif_step,
    liquid_readout_step,
    ltc_step,
    ltc_update,
)
from .readout import READOUT_CLASSES, FixedReadout, LinearReadout, LiquidReadout, Readout, get_readout
from .types import ALIFParameters, BRFParameters, ConvLTCParameters, LTCParameters, NeuronState

__all__ = [
    "LTC", "ALIF", "LIF", "BRF", "SpikingCell", "NEURON_CLASSES", "get_neuron", "ConvLTC", "ConvSpec", "parse_conv_spec",
    "NeuronState", "LTCParameters", "ALIFParameters", "BRFParameters", "ConvLTCParameters",
    "ltc_step", "ltc_update", "conv_ltc_step", "alif_step", "lif_step", "brf_step",
    "brf_divergence_boundary", "fixed_readout_step", "liquid_readout_step",
    "Readout", "FixedReadout", "LiquidReadout", "LinearReadout", "READOUT_CLASSES", "get_readout",
]

"""Spiking neurons (LTC, ALIF, LIF) and leaky readouts: pure step functions and modules (SPEC §2)."""
from .cells import ALIF, LIF, LTC, NEURONS, SpikingCell, get_neuron
from .functional import (
    ALIFParameters,
    LTCParameters,
    NeuronState,
    alif_step,
    fixed_readout_step,
    lif_step,
    liquid_readout_step,
    ltc_step,
)
from .readout import READOUTS, FixedReadout, LinearReadout, LiquidReadout, Readout, get_readout

__all__ = [
    "LTC", "ALIF", "LIF", "SpikingCell", "NEURONS", "get_neuron",
    "NeuronState", "LTCParameters", "ALIFParameters",
    "ltc_step", "alif_step", "lif_step", "fixed_readout_step", "liquid_readout_step",
    "Readout", "FixedReadout", "LiquidReadout", "LinearReadout", "READOUTS", "get_readout",
]

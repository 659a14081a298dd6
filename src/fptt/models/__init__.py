"""Recurrent networks that speak the *stateful-model protocol* (:mod:`.protocol`): the spiking
RNN (:mod:`.rnn`), the convolutional SNN (:mod:`.conv`) and the GRU/LSTM baselines (:mod:`.baselines`).

The protocol itself (``init_state`` and ``step``), the axis convention and the one check every
engine makes are in :mod:`.protocol`.
"""
from .conv import REFERENCE_DVS_CONV, SMALL_DVS_CONV, ConvNetworkState, ConvSNN
from .protocol import StatefulModel, check_sequence_input, check_stateful_model, unroll_steps
from .rnn import NetworkState, SpikingRNN

__all__ = ["SpikingRNN", "NetworkState", "unroll_steps", "ConvSNN", "ConvNetworkState", "REFERENCE_DVS_CONV", "SMALL_DVS_CONV",
           "check_sequence_input", "StatefulModel", "check_stateful_model"]

"""Recurrent networks that speak the *stateful-model protocol* (:mod:`.protocol`): the spiking
RNN (:mod:`.rnn`), the convolutional SNN (:mod:`.conv`) and the GRU/LSTM baselines (:mod:`.baselines`).

Axis convention (the whole library): sequences are **batch first**, ``(batch, time, features)``;
one time step is ``(batch, features)``.

Stateful-model protocol (what the training engines need, and all they need)::

    state = model.init_state(batch_size, device=None, dtype=None)
    output_t, state = model.step(x_t, state)          # one time step
    outputs = model(x)                                  # (B, T, C) -> (B, T, O)

A state is a tensor or a nested tuple/NamedTuple of tensors; engines only map over it
(:mod:`fptt.state`). Any ``nn.Module`` with these methods can be trained by every engine.
"""
from .conv import REFERENCE_DVS_CONV, SMALL_DVS_CONV, ConvNetworkState, ConvSNN
from .protocol import StatefulModel, check_sequence_input, check_stateful_model, unroll_steps
from .rnn import NetworkState, SpikingRNN

__all__ = ["SpikingRNN", "NetworkState", "unroll_steps", "ConvSNN", "ConvNetworkState", "REFERENCE_DVS_CONV", "SMALL_DVS_CONV",
           "check_sequence_input", "StatefulModel", "check_stateful_model"]

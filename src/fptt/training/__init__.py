"""Training: batches, the engines' time loop, FPTT windows, streaming, metrics, data parallelism,
and the forward-in-time gradients of e-prop and OSTL (:mod:`fptt.training.traces`).

The modules are imported where used; this package imports nothing, so that importing one of
them does not load the others.
"""

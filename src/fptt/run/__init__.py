"""The application behind ``fptt train``: configuration, presets, builders, the trainer's epoch
loop, checkpoints, trackers, comparison of runs and plots.

This package imports nothing, so that the command line can read a configuration without torch.
"""

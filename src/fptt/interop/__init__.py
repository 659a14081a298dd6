"""Interoperability: adapters for snnTorch, Norse and SpikingJelly networks
(:mod:`fptt.interop.adapters`) and NIR export/import (:mod:`fptt.interop.nir`)."""

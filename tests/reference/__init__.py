"""Plain, loop-based reference implementations used as test oracles."""

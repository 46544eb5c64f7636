"""Layer 1, the swap library users import: activation specs, the swap, census, model YAMLs, the swap-aware trainer,
loading, training-free repairs. It imports only ``utils``: never data, a back end or the harness."""

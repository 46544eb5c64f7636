"""Layer 4, the comparison harness: config, cells, the executor (local or Ray), summary, report, plots, ``compare``."""

"""Layer 0, the foundation: errors, atomic writes, the terminal, the test hold points. Imports nothing above it."""

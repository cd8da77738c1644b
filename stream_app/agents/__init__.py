"""Faust agents, one module per input topic family, plus the shared dead-letter and publisher."""

"""Synthetic wedding-business history for what no public data covers.

A photography chain (photographers are ``suppliers`` of kind ``photographer``), a caterer
(menus, ingredients, per-event usage and waste) and a wedding planner with offices:
:mod:`stream_app.synthetic.generator` makes the rows (deterministic for a seed; the
distributions are in its docstring), :mod:`stream_app.synthetic.load` copies them into
PostgreSQL. ``wedding-engine synth`` is the command line of both.
"""

from stream_app.synthetic.generator import BUSINESSES, Business, SynthConfig, generate
from stream_app.synthetic.load import LoadSummary, load_synthetic

__all__ = ["BUSINESSES", "Business", "LoadSummary", "SynthConfig", "generate", "load_synthetic"]

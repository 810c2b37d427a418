"""Replays recorded ticks through the decision pipeline and the fill model, and reports."""

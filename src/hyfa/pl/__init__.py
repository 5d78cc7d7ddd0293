"""Plotting (comparison plots arrive with the evaluation tools)."""

__all__: list[str] = []

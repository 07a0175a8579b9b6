"""Basics every part shares: the settings, the run spec, products, locks, the work store, the recorder and
progress. Standard library only at module level; the tracking provider ships it."""

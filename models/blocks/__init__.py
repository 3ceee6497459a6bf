"""Shared layers used by several model families (TF-Locoformer, band-split, SFC-CA, norms)."""

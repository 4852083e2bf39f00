"""Hydra sweeper that launches only the valid CKA comparisons (`hydra/sweeper=cka`)."""

"""Compare the internal representations of many trained models by CKA, as a Hydra app."""

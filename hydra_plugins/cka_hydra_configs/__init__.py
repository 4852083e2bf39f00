"""cka_hydra's config search path: a user's `--config-dir` first, and pair/seed_pair options of any index."""

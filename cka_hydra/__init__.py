"""Compare the internal representations of many trained models by CKA, as a Hydra app.

The Python way in (cka_hydra.api): `compare(overrides)` runs one comparison in this process,
`load_results(results_dir)` reads every result as a DataFrame.
"""

__all__ = ["compare", "load_results"]


def __getattr__(name: str) -> object:
    """compare and load_results, imported when first used: `import cka_hydra` stays light."""
    if name in __all__:
        from cka_hydra import api

        return getattr(api, name)
    raise AttributeError(f"module 'cka_hydra' has no attribute {name!r}")

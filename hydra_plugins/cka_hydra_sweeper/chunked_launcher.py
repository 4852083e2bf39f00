"""Launchers that run several comparisons per array task: `hydra/launcher=slurm` and `slurm_local`."""

try:
    from ._chunked import ChunkedLocalLauncher, ChunkedSlurmLauncher  # noqa: F401 (found by Hydra's plugin scan)
except ImportError:  # without the slurm extra there is nothing to offer; cka_hydra.__main__ says what to install
    pass

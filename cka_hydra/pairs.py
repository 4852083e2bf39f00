"""Names of models and instances, and which of them may be compared.

Plain functions of a regime's data (model index -> training tasks, seed labels):
no files, no Hydra.
"""

from collections.abc import Sequence

ORIGINAL_SEED = "orig"


def model_name(regime: str, index: int) -> str:
    """`pt2`, 1 -> `pt2-1`."""
    return f"{regime}-{index}"


def instance_name(model: str, seed: str) -> str:
    """A model at a seed, as the store and result folders name it: `pt2-1`, `pt2-1_seed1`."""
    return model if seed == ORIGINAL_SEED else f"{model}_seed{seed}"


def shared_tasks(tasks_a: Sequence[str], tasks_b: Sequence[str]) -> list[str]:
    """The training tasks two models have in common, in the order of the first model's list."""
    return [task for task in tasks_a if task in set(tasks_b)]

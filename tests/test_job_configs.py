"""The sweep's job configs, made from a copy of a composed one, equal Hydra's own composition."""

import itertools

import pytest
from hydra import initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode
from omegaconf import OmegaConf

from cka_hydra.overrides import hydra_argv
from cka_hydra.app import register
from hydra_plugins.cka_hydra_sweeper._job_configs import JobConfigLoader

register()
PAIRS = [f"{a}_{b}" for a, b in itertools.combinations_with_replacement(range(1, 8), 2)]
SEED_PAIRS = ["orig_1", "1_orig", "1_2", "2_2", "orig_orig"]


def jobs(fixed, pairs):
    """Job overrides as the sweeper writes them, cycling every option of seed_pair and layer."""
    for i, (regime, pair) in enumerate(itertools.product(["pt1", "pt2", "pt3"], pairs)):
        yield [f"regime={regime}", f"pair='{pair}'", f"seed_pair='{SEED_PAIRS[i % 5]}'", f"layer='{i % 7}'", *fixed]


def snapshot(config):
    """What a job sees and records: the whole tree unresolved, and the flags Hydra sets."""
    return (OmegaConf.to_yaml(config), OmegaConf.is_struct(config), OmegaConf.is_readonly(config),
            OmegaConf.is_readonly(config.hydra))


@pytest.mark.parametrize("fixed, pairs", [
    ([], PAIRS[::7]),
    (["cka.kernel=rbf", "checkpoints=[0,7813]", "city_filter=null", "data.root=/tmp"], PAIRS[3::7]),
    (["pair.a=3"], PAIRS[:1]),  # reaches into a copied group: composed by Hydra, and still equal
])
def test_copied_job_configs_equal_hydras_composition(fixed, pairs):
    with initialize_config_module(config_module="cka_hydra.conf", version_base="1.3"):
        hydra_loader = GlobalHydra.instance().config_loader()
        master = hydra_loader.load_configuration("sweep", hydra_argv(["hydra.sweep.dir=/tmp/x"]), RunMode.MULTIRUN)
        loader = JobConfigLoader(hydra_loader)
        checked = 0
        for overrides in jobs(fixed, pairs):
            assert snapshot(loader.load_sweep_config(master, overrides)) == \
                snapshot(hydra_loader.load_sweep_config(master, overrides)), overrides
            checked += 1
        assert checked == 3 * len(pairs)
        # the second job onwards of each regime came from a copy, unless an override reaches into a group
        assert len(loader._composed) == (0 if fixed == ["pair.a=3"] else 3)

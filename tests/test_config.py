"""The typed edge and result identity, in-process: composed configs, their dataclasses, run folder names."""

from dataclasses import replace

import pytest
from conftest import short_hash
from hydra import compose, initialize_config_module

from cka_hydra import identity
from cka_hydra.app import register
from cka_hydra.identity import default_settings, settings
from cka_hydra.schema import CKAConfig, Kernel, RegimeConfig, RunConfig, report_config, run_config
from cka_hydra.errors import InputError
from cka_hydra.filters import STUDY_FILTER
from cka_hydra.pairs import Comparison

register()
BASE = ["regime=pt2", "pair='1_2'", "seed_pair='orig_1'", "layer='5'"]


def composed(*overrides, hydra=False):
    with initialize_config_module(config_module="cka_hydra.conf", version_base="1.3"):
        return compose("config", overrides=[*BASE, *overrides], return_hydra_config=hydra)


def folder(*overrides):
    run = run_config(composed(*overrides))
    return identity.subdir(run.comparison, settings(run), default_settings())


def test_the_composed_config_becomes_plain_dataclasses_with_the_defaults():
    run = run_config(composed())
    assert type(run) is RunConfig and type(run.cka) is CKAConfig
    assert (run.cka.kernel, run.checkpoints, run.city_filter, run.data.root) == (
        Kernel.linear, "final", STUDY_FILTER, None)
    assert run.comparison == Comparison("pt2", 1, 2, "orig", "1", 5, 5)
    assert identity.changed(settings(run), default_settings()) == {}


@pytest.mark.parametrize("overrides, name", [
    ([], "layer5"),
    (["cka.kernel=linear", "checkpoints=final", "cka.sigma_frac=0.7", "cka.confidence=0.5", "device=cpu",
      "allow_overlap=true", "overwrite=true"], "layer5"),  # none of these can change a linear, final result
    (["data.root=/tmp"], "layer5"),  # the data root is the results dir's, not the folder name's
    (["cka.kernel=rbf"], "layer5-rbf0.4"),
    (["cka.kernel=rbf", "cka.sigma_frac=0.7"], "layer5-rbf0.7"),
    (["cka.debiased=true"], "layer5-debiased"),
    (["cka.precision=float32"], "layer5-f32"),
    (["checkpoints=all"], "layer5-all"),
    (["checkpoints=[164073,0,0]"], "layer5-steps0+164073"),
    (["checkpoints=[1,2,3,4]"], f"layer5-steps-{short_hash([1, 2, 3, 4])}"),
    (["cka.bootstrap=200"], "layer5-boot200"),
    (["cka.bootstrap=200", "cka.confidence=0.9", "cka.seed=3"], "layer5-boot200-ci0.9-seed3"),
    (["city_filter=null"], "layer5-nofilter"),
    (["city_filter=''"], "layer5-nofilter"),  # keeps every city too: the same result
    (["city_filter='region:^Europe'"], f"layer5-filter-{short_hash('region:^Europe')}"),
    (["cka.kernel=rbf", "cka.debiased=true", "cka.precision=float32", "checkpoints=all"],
     "layer5-rbf0.4-debiased-f32-all"),
])
def test_run_folder_names(overrides, name):
    assert folder(*overrides) == f"pt2/pt2-1_vs_pt2-2_seed1/{name}"


def test_different_settings_never_share_a_folder():
    variants = [[], ["cka.kernel=rbf"], ["cka.kernel=rbf", "cka.sigma_frac=0.41"], ["cka.debiased=true"],
                ["cka.precision=float32"], ["checkpoints=all"], ["checkpoints=[0]"], ["checkpoints=[0,82036]"],
                ["cka.bootstrap=10"], ["cka.bootstrap=10", "cka.seed=1"], ["cka.bootstrap=10", "cka.confidence=0.9"],
                ["city_filter=null"], ["city_filter='region:^A'"], ["city_filter='region:^B'"]]
    names = [folder(*v) for v in variants]
    assert len(set(names)) == len(names)


def test_the_resolvers_give_hydra_the_same_folder():
    cfg = composed("cka.kernel=rbf", hydra=True)
    assert cfg.hydra.sweep.subdir == "pt2/pt2-1_vs_pt2-2_seed1/layer5-rbf0.4"
    assert cfg.hydra.sweep.dir == "outputs/cka_demo"
    assert composed("data.root=/tmp", hydra=True).hydra.sweep.dir == "outputs/cka"


def test_a_setting_added_later_gets_a_name_without_changes_to_the_scheme():
    defaults = {"probe.name": "ridge", "probe.folds": 3}
    assert identity.settings_label({"probe.name": "ridge", "probe.folds": 5}, defaults) == "folds5"
    assert identity.settings_label({"probe.name": "ridge cv", "probe.folds": 3}, defaults) == (
        f"name-{short_hash('ridge cv')}")
    assert identity.settings_label({"new.flag": True}, {}) == "flagTrue"


@pytest.mark.parametrize("override, message", [
    ("+cka.kernal=rbf", "cka.kernal: unknown setting; cka has: kernel, sigma_frac"),
    ("+data.rooot=/x", "data.rooot: unknown setting; data has: root"),
    ("+kernel=rbf", "kernel: unknown setting; the settings are: regime, pair"),
    ("cka.sigma_frac=0", r"cka.sigma_frac=0.0: expected a positive number"),
    ("cka.bootstrap=-1", r"cka.bootstrap=-1: expected 0 \(no interval\) or a number of resamples"),
    ("cka.confidence=95", "cka.confidence=95.0: expected a level between 0 and 1"),
    ("checkpoints=some", "checkpoints=some: expected final, all, or a list of steps"),
    ("checkpoints=[]", "expected final, all, or a list of steps"),
    ("checkpoints=[1.5]", "expected final, all, or a list of steps"),
    ("device=gpu", "device=gpu: expected auto, cpu, cuda or cuda:N"),
    ("city_filter='region:('", r"city_filter: invalid regex '\(' for field 'region'"),
    ("measure.components=0", "measure.components=0: expected 1 or more principal components"),
    ("layer_b=-1", "layer_b=-1: expected a layer index, 0 or more"),
])
def test_unknown_keys_and_bad_values_are_refused_at_the_edge(override, message):
    cfg = composed(override)
    with pytest.raises(InputError, match=message):
        run_config(cfg)


def test_data_root_is_resolved_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = run_config(composed("data.root=store/../store"))
    assert run.data.root == str(tmp_path / "store")
    assert settings(run)["data.root"] == str(tmp_path / "store")


def test_settings_leave_out_what_cannot_change_the_result():
    run = run_config(composed())
    assert "cka.sigma_frac" not in settings(run) and "cka.seed" not in settings(run)
    rbf = replace(run, cka=CKAConfig(kernel=Kernel.rbf, sigma_frac=0.7, bootstrap=5, seed=2))
    assert {k: v for k, v in settings(rbf).items() if k.startswith("cka.")} == {
        "cka.kernel": "rbf", "cka.sigma_frac": 0.7, "cka.debiased": False, "cka.precision": "float64",
        "cka.bootstrap": 5, "cka.confidence": 0.95, "cka.seed": 2}
    assert not {"device", "overwrite", "allow_overlap"} & set(settings(rbf))


def test_a_model_against_itself_is_one_comparison_whichever_seed_comes_first():
    forward = run_config(composed("pair='1_1'", "seed_pair='orig_1'"))
    backward = run_config(composed("pair='1_1'", "seed_pair='1_orig'"))
    assert backward.comparison == forward.comparison == Comparison("pt2", 1, 1, "orig", "1", 5, 5)
    other_models = run_config(composed("pair='1_2'", "seed_pair='1_orig'"))  # a different comparison
    assert (other_models.seed_pair.a, other_models.seed_pair.b) == ("1", "orig")


def test_the_report_config_refuses_unknown_keys():
    with initialize_config_module(config_module="cka_hydra.conf", version_base="1.3"):
        cfg = compose("report", overrides=["+data.rot=/x"])
        assert report_config(compose("report")).sweep_dir == "outputs/cka_demo"
        assert report_config(compose("report", overrides=["data.root=/x"])).sweep_dir == "outputs/cka"
    with pytest.raises(InputError, match="data.rot: unknown setting; data has: root"):
        report_config(cfg)


@pytest.mark.parametrize("change, message", [
    (dict(name="../pt2"), r"regime '../pt2': name: '../pt2' is not a plain name"),
    (dict(name="pt2/x"), r"name: 'pt2/x' is not a plain name"),
    (dict(seeds=["orig", ".."]), r"seeds: '..' is not a plain name"),
    (dict(models={1: ["distance", "a/b"]}), r"models: 'a/b' is not a plain name"),
    (dict(original_dir="../{model}"), r"original_dir='../{model}': expected a relative path below data.root"),
    (dict(seed_dir="/abs/{model}_seed{seed}"), r"seed_dir='/abs/{model}_seed{seed}': expected a relative path"),
    (dict(representations_dir="x/../../{task}"), r"representations_dir='x/../../{task}'"),
    (dict(models={}), r"expected at least one model and one seed"),
    (dict(original_dir="{foo}/{model}"), r"original_dir='{foo}/{model}': its placeholders may be {index}, {model} only"),
    (dict(seed_dir="{model"), r"seed_dir='{model': its placeholders may be {index}, {model}, {seed} only"),
    (dict(original_dir="{model.__class__}"), r"its placeholders may be {index}, {model} only"),
])
def test_a_regime_whose_names_or_templates_would_leave_their_folders_is_refused(change, message):
    regime = dict(name="pt2", models={1: ["distance"], 2: ["angle"]}, seeds=["orig", "1"], original_dir="{model}",
                  seed_dir="revision/{model}_seed{seed}", representations_dir="{task}_l{layer}/representations")
    with pytest.raises(InputError, match=message):
        RegimeConfig(**{**regime, **change})
    RegimeConfig(**regime)  # the same regime, unchanged, is fine

"""model.head_options belong to model.head: a config layer (YAML file, CLI flags, --set
overrides) that changes the head without giving options leaves them at {} (the new
head's own defaults); options given in the same layer apply on top of {}."""
from pathlib import Path

import pytest

from sfrs.config import Config, build_config, load_config, load_yaml, save_yaml, to_dict
from sfrs.errors import ConfigError
from sfrs.models import build_head
from sfrs.training.initialise import _ARCHITECTURE_KEYS

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _model(yaml_text=None, overrides=(), tmp_path=None):
    path = None
    if yaml_text is not None:
        path = tmp_path / "c.yaml"
        path.write_text(yaml_text)
    return build_config(Config, path, overrides).model


def test_set_head__without_options_starts_from_the_new_head_s_defaults():
    model = _model(overrides=["model.head=rmac"])
    assert (model.head, model.head_options) == ("rmac", {})
    assert build_head(model.head, dim=8, **model.head_options).levels == 3
    assert load_config(overrides=["model.head=mac"]).model.head_options == {}


@pytest.mark.parametrize("overrides", [
    ["model.head=rmac", "model.head_options.levels=2"],
    ["model.head_options.levels=2", "model.head=rmac"],  # order within the layer does not matter
    ["model.head=rmac", "model.head_options={levels: 2}"],
    ["model.head_options={levels: 2}", "model.head=rmac"],
])
def test_set_head__options_of_the_same_layer_apply_on_top_of_empty(overrides):
    model = _model(overrides=overrides)
    assert (model.head, model.head_options) == ("rmac", {"levels": 2})


def test_set_same_head__keeps_the_options():
    assert _model(overrides=["model.head=netvlad"]).head_options == {"clusters": 16}
    assert _model(overrides=["model.head_options.clusters=8"]).head_options == {"clusters": 8}
    # changed and changed back within one layer: no change
    assert _model(overrides=["model.head=gem", "model.head=netvlad"]).head_options == {"clusters": 16}


def test_yaml_head__without_options_resets_them_with_options_keeps_them(tmp_path):
    assert _model("model: {head: gem}\n", tmp_path=tmp_path).head_options == {}
    assert _model("model: {head: gem, head_options: {p: 2.0}}\n", tmp_path=tmp_path).head_options == {"p": 2.0}
    assert _model("model: {head: netvlad}\n", tmp_path=tmp_path).head_options == {"clusters": 16}
    assert _model("model: {head_options: {clusters: 32}}\n", tmp_path=tmp_path).head_options == {"clusters": 32}


def test_layers__each_judged_against_the_one_before(tmp_path):
    yaml_text = "model: {head: gem, head_options: {p: 2.0}}\n"
    # --set repeats the YAML's head: the YAML's options stay
    assert _model(yaml_text, ["model.head=gem"], tmp_path).head_options == {"p": 2.0}
    # --set changes it again: back to the defaults of the new head
    model = _model(yaml_text, ["model.head=netvlad"], tmp_path)
    assert (model.head, model.head_options) == ("netvlad", {})
    assert build_head(model.head, dim=8, **model.head_options).clusters == 64
    # options of an earlier layer do not survive a later head change
    model = _model("model: {head_options: {clusters: 32}}\n", ["model.head=salad"], tmp_path)
    assert model.head_options == {}


def test_direct_values__are_a_layer_of_their_own():
    config = build_config(Config, overrides=["model.head=gem"], direct={"model.head": "rmac", "seed": 3})
    assert (config.model.head, config.model.head_options, config.seed) == ("gem", {}, 3)
    config = build_config(Config, direct={"model.head": "rmac", "model.head_options": {"levels": 1}})
    assert config.model.head_options == {"levels": 1}


def test_wrong_options_for_the_head__still_refused_when_given():
    model = _model(overrides=["model.head=mac", "model.head_options={clusters: 8}"])
    with pytest.raises(ConfigError, match="head 'mac' has no option 'clusters'"):
        build_head(model.head, dim=8, **model.head_options)


def test_defaults__still_equal_synthetic_yaml_and_saved_configs_rebuild_identically(tmp_path):
    assert load_yaml(CONFIGS / "synthetic.yaml") == to_dict(Config())
    assert build_config(Config, CONFIGS / "synthetic.yaml") == Config()
    # a run's config.yaml, read back (resume, init_from), has the same architecture keys
    config = build_config(Config, overrides=["model.head=rmac", "model.head_options.levels=2"])
    save_yaml(config, tmp_path / "config.yaml")
    rebuilt = build_config(Config, tmp_path / "config.yaml")
    assert rebuilt == config
    assert {k: to_dict(rebuilt.model)[k] for k in _ARCHITECTURE_KEYS} == \
        {k: to_dict(config.model)[k] for k in _ARCHITECTURE_KEYS}
    resumed = build_config(Config, tmp_path / "config.yaml", overrides=["model.head=rmac", "optim.lr=0.5"])
    assert resumed.model == config.model

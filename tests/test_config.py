import re
from pathlib import Path

import pytest

from sfrs.config import Config, build_config, dump_yaml, load_config, load_yaml, to_dict, validate_config, with_schedule
from sfrs.errors import ConfigError
from sfrs.training.terms import term_specs

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_synthetic_yaml__spells_out_the_defaults():
    assert load_yaml(CONFIGS / "synthetic.yaml") == to_dict(Config())


def _leaves(data, prefix=()):
    """(dotted key, value) of every value a YAML file spells out."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _leaves(value, prefix + (key,))
    else:
        yield prefix, data


def _lookup(data, path):
    for key in path:
        data = data[key]
    return data


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_shipped_configs__hold_what_their_yaml_says_and_validate(name):
    config = load_config(CONFIGS / name)
    built = to_dict(config)
    for path, value in _leaves(load_yaml(CONFIGS / name)):
        got = _lookup(built, path)
        assert got == (list(value) if isinstance(value, tuple) else value), ".".join(map(str, path))
    specs = term_specs(config.loss)  # every term and option is known
    assert set(specs) >= {"hard", "soft"}


def test_paper_config__has_the_reference_values():
    config = build_config(Config, CONFIGS / "pitts30k_vgg16_netvlad.yaml")
    assert config.model.backbone == "vgg16" and config.model.head_options == {"clusters": 64}
    assert config.model.input_size == (480, 640) and config.model.pretrained == "imagenet"
    assert (config.optim.lr, config.optim.momentum, config.optim.weight_decay) == (0.001, 0.9, 0.001)
    assert config.optim.tuples_per_step == 4
    assert (config.mining.negatives, config.mining.difficult_positives) == (10, 10)
    assert [g.epochs for g in config.train.generations] == [1, 5, 5, 5]
    assert [g.teacher_temperature for g in config.train.generations] == [0.07, 0.07, 0.06, 0.05]
    assert [g.soft_weight for g in config.train.generations] == [0.0, 0.5, 0.5, 0.5]


def test_unknown_key__is_named():
    with pytest.raises(ConfigError, match="unknown config key 'optim.learning_rate'"):
        build_config(Config, overrides=["optim.learning_rate=0.1"])


def test_wrong_type__is_named():
    with pytest.raises(ConfigError, match="'optim.lr' must be a number"):
        build_config(Config, overrides=["optim.lr=fast"])
    with pytest.raises(ConfigError, match="'model.input_size' must have 2 items"):
        build_config(Config, overrides=["model.input_size=[1,2,3]"])


def test_overrides__reach_nested_keys_and_list_items(tmp_path):
    yaml_path = tmp_path / "c.yaml"
    yaml_path.write_text("optim: {lr: 0.5}\nmodel: {head: gem, head_options: {p: 2.0}}\n")
    config = build_config(
        Config, yaml_path,
        overrides=["optim.momentum=0.5", "train.generations.1.epochs=7", "train.generations.*.soft_weight=0"],
    )
    assert config.optim.lr == 0.5 and config.optim.momentum == 0.5
    # head_options is replaced as a whole by the YAML: no stray NetVLAD cluster count
    assert config.model.head_options == {"p": 2.0}
    assert config.train.generations[1].epochs == 7
    assert all(g.soft_weight == 0 for g in config.train.generations)


def test_bad_list_index__is_clear():
    with pytest.raises(ConfigError, match="index must be"):
        build_config(Config, overrides=["train.generations.9.epochs=1"])


def test_with_schedule__cuts_or_repeats_the_last_generation():
    config = Config()
    assert len(with_schedule(config, generations=2).train.generations) == 2
    longer = with_schedule(config, generations=6, epochs=3).train.generations
    assert len(longer) == 6 and all(g.epochs == 3 for g in longer)
    last = config.train.generations[-1]
    assert longer[5].teacher_temperature == last.teacher_temperature
    assert longer[5].soft_weight == last.soft_weight


@pytest.mark.parametrize(
    "override, message",
    [
        ("loss.terms.hard.weight=-1", "loss.terms.hard.weight must be a number >= 0"),
        ("train.best_metric='50'", "must be one of eval.recall_at"),
        ("mining.difficult_positives_by=oracle", "difficult_positives_by must be"),
        ("train.generations.0.soft_weight=0.5", "generation 0 has no teacher"),
        ("train.generations.1.student_init=warm", "student_init must be"),
        ("mining.positive_candidates=2", "positive_candidates must be"),
    ],
)
def test_validate__rejects_inconsistent_values(override, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(build_config(Config, overrides=[override]))


def test_dump_yaml__round_trips(tmp_path):
    config = build_config(Config, overrides=["optim.lr=0.25"])
    path = tmp_path / "out.yaml"
    path.write_text(dump_yaml(config))
    assert build_config(Config, path) == config


def test_loss_terms__merge_by_name_from_yaml_and_overrides(tmp_path):
    yaml_path = tmp_path / "c.yaml"
    yaml_path.write_text("loss: {terms: {hard: {loss: triplet}, extra: {weight: 0.5}}}\n")
    config = build_config(Config, yaml_path, overrides=["loss.terms.extra.temperature=0.1"])
    # adding a term keeps the others, and an entry's options merge with its defaults
    assert config.loss.terms == {
        "hard": {"weight": 1.0, "loss": "triplet"}, "soft": {"weight": 1.0},
        "extra": {"weight": 0.5, "temperature": 0.1},
    }


def test_numbers__read_in_every_usual_notation_from_yaml_and_set(tmp_path):
    yaml_path = tmp_path / "c.yaml"
    yaml_path.write_text("optim: {lr: 1e-4, momentum: .5, weight_decay: 5.}\n"
                         "mining: {negatives: 1E1, cache_refresh: 010}\ntrain: {best_metric: 10}\n")
    config = build_config(Config, yaml_path, overrides=["loss.temperature=-2e+3", "data.batch_size='3'"])
    assert (config.optim.lr, config.optim.momentum, config.optim.weight_decay) == (1e-4, 0.5, 5.0)
    assert (config.mining.negatives, config.mining.cache_refresh) == (10, 10)
    assert config.loss.temperature == -2000.0 and config.data.batch_size == 3
    assert config.train.best_metric == "10"
    config = build_config(Config, overrides=["optim.lr=1E-3", "train.best_metric=10", "loss.terms.soft.weight=1e-1"])
    assert config.optim.lr == 1e-3 and config.train.best_metric == "10"
    assert config.loss.terms["soft"]["weight"] == 0.1


def test_load_yaml__numbers_as_python_reads_them_and_booleans_kept(tmp_path):
    yaml_path = tmp_path / "c.yaml"
    yaml_path.write_text("a: 1e-4\nb: -.5\nc: 0x1F\nd: true\ne: yes\nf: 1.2.3\ng: ~\nh: '1e-4'\n")
    assert load_yaml(yaml_path) == {"a": 1e-4, "b": -0.5, "c": 31, "d": True, "e": True, "f": "1.2.3", "g": None,
                                    "h": "1e-4"}


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.lr=.nan", "'optim.lr' must be a finite number, got nan"),
        ("optim.lr=.inf", "'optim.lr' must be a finite number, got inf"),
        ("optim.lr='inf'", "'optim.lr' must be a finite number, got 'inf'"),
        ("mining.negatives=3.5", "'mining.negatives' must be an integer, got 3.5"),
        ("mining.negatives='3.5'", "'mining.negatives' must be an integer, got '3.5'"),
        ("mining.negatives=many", "'mining.negatives' must be an integer, got 'many'"),
        ("train.best_metric=true", "'train.best_metric' must be a string"),
    ],
)
def test_numbers__refused_with_the_key_named(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        build_config(Config, overrides=[override])


def test_adapt_config__reads_exponent_notation():
    from sfrs.adaptation import load_adapt_config

    config = load_adapt_config(overrides=["optim.lr=1e-3", "optim.weight_decay=1E-2"], direct={"data.dataset": "x"})
    assert (config.optim.lr, config.optim.weight_decay) == (1e-3, 1e-2)


@pytest.mark.parametrize("best", ["50", "val R@5", "R@5"])
def test_best_metric__outside_eval_recall_at_names_both_keys_and_the_allowed_values(best):
    with pytest.raises(ConfigError, match=re.escape(
        f"train.best_metric must be one of eval.recall_at (1, 5, 10, 20), the N of val R@N; got '{best}'"
    )):
        load_config(overrides=[f"train.best_metric={best}"])

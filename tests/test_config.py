import pytest

from paradis.config import ConfigError, RunConfig, TrainingConfig, load_run_config, validate


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"training": {"method": "adam"}}, "training.method"),
        (
            {"training": {"switches": ["[1.5]"]}},
            "switches[0]: switch [1.5] spans width 1.5, wider than the wide",
        ),
        ({"training": {"beta": -1}}, "training.beta: Input should be greater than or equal to 0 (got -1)"),
        ({"training": {"switches": []}}, "switches is empty"),
        ({"training": {"epochs": 0}}, "training.epochs: Input should be greater than 0 (got 0)"),
        ({"training": {"switches": ["[0, 1]"]}}, "width 0.0 must be positive"),
        ({"training": {"switchs": ["[1.0]"]}}, "training.switchs: unknown key"),
        ({"model": {"name": "vgg"}}, "model.name: unknown model 'vgg'"),
        ({"data": {"name": "mnist"}}, "data.name: unknown data set 'mnist'"),
        ({"training": {"method": "individual"}}, "exactly one switch"),
        ({"training": {"beta": 1, "switches": ["[0.5, 0.5]"]}}, "[1.0] is not among the switches"),
        ({"evaluation": {"switches": ["[2.0]"]}}, "evaluation.switches[0]"),
    ],
)
def test_bad_configurations_name_the_value_and_key(data, needle):
    with pytest.raises(ConfigError) as err:
        validate(RunConfig, data, "run.yaml")
    msg = str(err.value)
    assert msg.startswith("run.yaml: ") and needle in msg
    assert "\n" not in msg


def test_defaults_per_method():
    assert TrainingConfig().distillation == "wide"
    assert TrainingConfig(method="slimmable", switches=["[1.0]", "[0.5]"]).distillation == "none"
    assert TrainingConfig(method="individual", switches=["[0.5, 0.5]"]).distillation == "none"


def test_yaml_loading_is_safe_strict_and_overridable(tmp_path):
    good = tmp_path / "run.yaml"
    good.write_text("training:\n  epochs: 3\n  beta: 0.1\n")
    cfg = load_run_config(good, ["training.epochs=5", "training.switches=[[1.0], '[0.5, 0.5]']"])
    assert cfg.training.epochs == 5 and cfg.training.beta == 0.1
    assert cfg.training.switches == ["[1.0]", "[0.5, 0.5]"]
    bad = {
        "dup.yaml": ("training:\n  epochs: 1\n  epochs: 2\n", "duplicate key 'epochs'"),
        "tag.yaml": ("training: !!python/object:os.system {}\n", "not valid YAML"),
        "empty.yaml": ("", "the file is empty"),
        "list.yaml": ("- 1\n- 2\n", "expected a mapping"),
    }
    for name, (text, needle) in bad.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(ConfigError, match=needle):
            load_run_config(tmp_path / name)
    with pytest.raises(ConfigError, match="cannot read"):
        load_run_config(tmp_path / "missing.yaml")


def test_the_baselines_round_as_their_authors_did_unless_told():
    assert RunConfig.model_validate({"training": {"method": "us"}}).model.rounding == "us-nets"
    assert RunConfig.model_validate({"training": {"method": "slimmable", "switches": ["[0.5]"]}}).model.rounding == (
        "us-nets"
    )
    assert RunConfig().model.rounding == "paradis"  # ParaDiS switches keep the shared cumulative rule
    chosen = RunConfig.model_validate({"training": {"method": "us"}, "model": {"rounding": "paradis"}})
    assert chosen.model.rounding == "paradis"

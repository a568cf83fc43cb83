import pytest

from mindrec.config import (ConfigError, DCNConfig, SparseMode, TrainConfig, WideDeepConfig,
                            build_run_config, from_dict)


def test_unknown_key_is_rejected_by_name():
    with pytest.raises(ConfigError, match="crossing_layers"):
        from_dict(DCNConfig, {"crossing_layers": 3}, "suite.yaml:dcn")


def test_wrong_type_names_the_key():
    with pytest.raises(ConfigError, match=r"cfg\.epochs"):
        from_dict(TrainConfig, {"epochs": "three"}, "cfg")
    with pytest.raises(ConfigError, match=r"cfg\.batch_size"):
        from_dict(TrainConfig, {"batch_size": True}, "cfg")


def test_yaml_values_are_coerced():
    cfg = from_dict(WideDeepConfig, {"deep_layers": [64, 32], "deep_lr": 1}, "cfg")
    assert cfg.deep_layers == (64, 32) and isinstance(cfg.deep_lr, float)
    train = from_dict(TrainConfig, {"sparse": "on", "max_steps": None}, "cfg")
    assert train.sparse is SparseMode.ON and train.max_steps is None
    with pytest.raises(ConfigError, match="not one of"):
        from_dict(TrainConfig, {"sparse": "maybe"}, "cfg")


def test_presets_mirror_the_original_and_overrides_win():
    original = build_run_config("wide_deep", "mindrec")
    assert original.model_config.emb_dim == 80
    assert original.model_config.deep_layers == (1024, 512, 256, 128)
    assert original.train.batch_size == 16000 and original.train.epochs == 15
    dcn = build_run_config("dcn", "mindrec")
    assert dcn.model_config.cross_layers == 6 and dcn.model_config.lr == 1e-4
    small = build_run_config("dcn", "cpu-small", train_overrides={"epochs": 4})
    assert small.train.epochs == 4 and small.train.batch_size == 1000


def test_unknown_model_and_preset():
    with pytest.raises(ConfigError, match="unknown model"):
        build_run_config("fm")
    with pytest.raises(ConfigError, match="unknown preset"):
        build_run_config("dcn", "huge")


def test_run_config_round_trips_through_plain_values():
    import json

    from mindrec.config import run_config_from_dict
    run = build_run_config("dcn", "cpu-small", train_overrides={"batch_size": 1000},
                           parallel={"mode": "hybrid", "workers": 2})
    assert run_config_from_dict(json.loads(json.dumps(run.to_dict()))) == run


@pytest.mark.parametrize("parallel, embedding, batch, match", [
    ({"mode": "standalone", "workers": 2}, "static", 1000, "exactly one worker"),
    ({"mode": "data_parallel", "workers": 1}, "static", 1000, "two or more"),
    ({"mode": "hybrid", "workers": 2}, "hash", 1000, "standalone only"),
    ({"mode": "data_parallel", "workers": 3}, "static", 1000, "multiple of"),
])
def test_parallel_config_errors_are_named(parallel, embedding, batch, match):
    with pytest.raises(ConfigError, match=match):
        build_run_config("wide_deep", "cpu-small", train_overrides={"batch_size": batch},
                         embedding={"kind": embedding}, parallel=parallel)


@pytest.mark.parametrize("model, overrides, match", [
    ("dcn", {"emb_dim": 0}, "emb_dim must be at least 1, got 0"),
    ("dcn", {"deep_layers": []}, "deep_layers must be one or more"),
    ("dcn", {"lr": -1e-3}, "lr must be positive"),
    ("dcn", {"cross_layers": -1}, "cross_layers must not be negative"),
    ("dcn", {"init_std": -0.1}, "init_std must not be negative"),
    ("wide_deep", {"deep_lr": 0}, "deep_lr must be positive"),
    ("wide_deep", {"wide_lr": float("nan")}, "wide_lr must be positive"),
    ("wide_deep", {"deep_l2": -1e-5}, "deep_l2 must not be negative"),
    ("wide_deep", {"deep_layers": [64, 0]}, "deep_layers must be one or more"),
])
def test_model_configs_check_their_values(model, overrides, match):
    with pytest.raises(ConfigError, match=match):
        build_run_config(model, model_overrides=overrides)


def test_hash_options_on_static_tables_are_errors():
    for name, value in (("permit_filter_value", 3), ("evict_filter_value", 10),
                        ("capacity", 100)):
        with pytest.raises(ConfigError, match=f"embedding.{name} applies to kind hash only"):
            build_run_config("wide_deep", embedding={name: value})
    hashed = build_run_config("wide_deep", embedding={"kind": "hash", "capacity": 100})
    assert hashed.embedding.capacity == 100


def test_the_default_preset_is_the_one_the_tools_use():
    from mindrec.config import DEFAULT_PRESET
    assert DEFAULT_PRESET == "cpu-small"
    assert build_run_config("dcn") == build_run_config("dcn", "cpu-small")


def test_config_files_name_their_problems(tmp_path):
    from mindrec.config import load_config_file, run_config_from_sections
    path = tmp_path / "run.yaml"
    path.write_text("model: dcn\ntrain: {batch_size: 500}\n")
    values = load_config_file(path)
    sections = {k: v for k, v in values.items() if k != "model"}
    assert run_config_from_sections("dcn", "cpu-small", sections).train.batch_size == 500
    path.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="run.yaml: not valid YAML"):
        load_config_file(path)
    path.write_text("modle: dcn\n")
    with pytest.raises(ConfigError, match="run.yaml: unknown key.*modle"):
        load_config_file(path)
    with pytest.raises(ConfigError, match="unknown section.*optimizer"):
        run_config_from_sections("dcn", "cpu-small", {"optimizer": {}})

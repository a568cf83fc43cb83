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
        build_run_config("deepfm")
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

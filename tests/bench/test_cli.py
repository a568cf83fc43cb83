"""End to end through the command line: synth -> convert -> train -> record."""
import json
import re

import pytest

from bench.cli import main
from bench.results import read_records
from mindrec.config import ConfigError


def test_train_writes_a_valid_record(tiny_data, tmp_path, capsys):
    out = tmp_path / "r.json"
    ckpt = tmp_path / "m.safetensors"
    assert main(["train", "--model", "wide_deep", "--data", str(tiny_data), "--epochs", "1",
                 "--batch-size", "500", "--max-steps", "12", "--out", str(out),
                 "--checkpoint", str(ckpt)]) == 0
    (record,) = read_records(out)
    assert record["status"] == "ok"
    assert record["spec"]["steps"] == 12 and record["spec"]["batch_size"] == 500
    assert record["spec"]["preset"] == "cpu-small" and record["spec"]["run_config"]["model"]
    m = record["metrics"]
    assert 0.5 < m["auc"] <= 1.0 and m["samples_per_s"] > 0 and m["peak_rss_mb"] > 100
    assert m["bayes_auc"] == json.loads((tiny_data / "meta.json").read_text())["bayes_auc"]
    assert ckpt.is_file()
    assert "test AUC" in capsys.readouterr().out


def test_data_commands(tmp_path, capsys):
    raw, conv = tmp_path / "raw", tmp_path / "conv"
    assert main(["data", "synth", "--rows", "3000", "--vocab", "2000", "--out", str(raw)]) == 0
    assert main(["data", "convert", "--input", str(raw / "train.txt"), "--out", str(conv)]) == 0
    assert "Bayes-optimal test AUC" in capsys.readouterr().out
    # A second conversion into the same directory refuses to overwrite it.
    assert main(["data", "convert", "--input", str(raw / "train.txt"), "--out", str(conv)]) == 2
    assert str(conv) in capsys.readouterr().err


def test_bad_config_is_a_clear_error(tiny_data, capsys):
    assert main(["train", "--model", "dcn", "--data", str(tiny_data / "nope")]) == 2
    assert "meta.json" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--mode", "data_parallel", "--workers", "0"], "workers must be at least 1, got 0"),
    (["--workers", "2"], "mode standalone with 2 workers"),
    (["--permit", "3"], "permit_filter_value applies to kind hash only"),
    (["--capacity", "100"], "capacity applies to kind hash only"),
    (["--timeout", "60"], "--timeout applies to the parallel modes only"),
    (["--job-dir", "j"], "--job-dir applies to the parallel modes only"),
    (["--epochs", "0"], "train.epochs must be at least 1, got 0"),
    (["--set", "model_config.emb_dim=0"], "emb_dim must be at least 1, got 0"),
    (["--set", "model_config.lr=-0.1"], "lr must be positive"),
    (["--set", "train.nope=1"], "unknown key.*nope"),
    (["--set", "emb_dim=4"], "SECTION.FIELD=VALUE"),
    (["--backend", "torch", "--embedding", "hash"], "backend torch: .*embedding.kind hash"),
    (["--backend", "torch", "--checkpoint", "c"], "--checkpoint and --resume are for the "
                                                  "mindspore backend"),
])
def test_options_that_do_not_apply_are_errors(tiny_data, capsys, args, message):
    """Zero is never "unset" and no option is silently ignored (nothing trains)."""
    assert main(["train", "--model", "dcn", "--data", str(tiny_data), *args]) == 2
    assert re.search(message, capsys.readouterr().err)


def test_precedence_command_line_over_file_over_preset(tmp_path):
    from bench.cli import build_parser
    from bench.run_args import run_config_from_args
    config = tmp_path / "run.yaml"
    config.write_text("model: dcn\npreset: mindrec\ntrain: {batch_size: 500, seed: 7}\n"
                      "model_config: {cross_layers: 2}\n")
    args = build_parser().parse_args(["train", "--data", "d", "--config", str(config),
                                      "--seed", "3", "--set", "train.warmup_steps=4"])
    run, preset = run_config_from_args(args)
    assert (run.model, preset) == ("dcn", "mindrec")
    assert run.train.seed == 3 and run.train.batch_size == 500  # flag, then file
    assert run.train.warmup_steps == 4 and run.model_config.cross_layers == 2
    assert run.model_config.emb_dim == 30 and run.train.epochs == 10  # the preset
    config.write_text("model: dcn\ntrian: {}\n")
    with pytest.raises(ConfigError, match="run.yaml: unknown key.*trian"):
        run_config_from_args(args)


def acceptance_data(tmp_path_factory):
    """300k synthetic rows, converted (made once per session)."""
    root = tmp_path_factory.getbasetemp() / "acceptance"
    raw, conv = root / "raw", root / "conv"
    if not (conv / "meta.json").exists():
        assert main(["data", "synth", "--rows", "300000", "--out", str(raw)]) == 0
        assert main(["data", "convert", "--input", str(raw / "train.txt"), "--out", str(conv)]) == 0
    return conv


def train_record(data, name: str, *args) -> dict:
    out = data.parent / f"{name}.json"
    if not out.exists():
        assert main(["train", "--data", str(data), "--out", str(out), *args]) == 0
    (record,) = read_records(out)
    return record


@pytest.mark.slow
@pytest.mark.parametrize("model", ["wide_deep", "dcn"])
def test_acceptance_300k_rows_reach_the_bayes_optimum(model, tmp_path_factory):
    """Issue 2's bar: cpu-small on 300k synthetic rows gets within 0.02 of the Bayes AUC."""
    m = train_record(acceptance_data(tmp_path_factory), model, "--model", model)["metrics"]
    assert m["auc"] >= m["bayes_auc"] - 0.02, m


@pytest.mark.slow
def test_acceptance_hash_tables_match_static_tables(tmp_path_factory, capsys):
    """Issue 5's bar: W&D on hash tables (permit 1, no eviction) within 0.005 AUC of
    static tables; with a permit threshold rare keys are dropped and counted."""
    data = acceptance_data(tmp_path_factory)
    static = train_record(data, "wide_deep", "--model", "wide_deep")["metrics"]
    hashed = train_record(data, "wide_deep-hash", "--model", "wide_deep", "--embedding", "hash")
    assert hashed["spec"]["embedding"] == "hash"
    assert abs(hashed["metrics"]["auc"] - static["auc"]) <= 0.005, (hashed["metrics"], static)
    assert hashed["metrics"]["hash_candidates"] == 0
    permit = train_record(data, "wide_deep-permit", "--model", "wide_deep",
                          "--embedding", "hash", "--permit", "5")["metrics"]
    assert permit["hash_candidates"] > 0 and permit["hash_default_fraction"] > 0
    assert "keys seen but not admitted" in capsys.readouterr().out

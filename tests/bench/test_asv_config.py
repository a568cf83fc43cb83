"""The asv setup: the configuration parses and points at bench/benchmarks, asv accepts the
benchmarks, their sizes are in the version, the held-batch loop they share with the micro
suites trains, and `make asv` asks no questions about a new machine. Runs no benchmark
(that takes minutes: docs/regression-tracking.md)."""
import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from bench.benchmarks import common
from bench.benchmarks.loops import held_batch_loop

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = sorted((ROOT / "bench" / "benchmarks").glob("*.py"))


def _config() -> dict:
    return json.loads((ROOT / "asv.conf.json").read_text())


def test_config_parses_and_points_at_the_benchmarks():
    conf = _config()
    assert conf["benchmark_dir"] == "bench/benchmarks"
    assert (ROOT / "bench" / "benchmarks" / "__init__.py").is_file()
    assert (ROOT / "bench" / "benchmarks" / "common.py").is_file()
    assert conf["results_dir"] == "results/asv"
    assert conf["html_dir"] == "results/asv-html"
    assert conf["environment_type"] == "virtualenv"
    assert conf["pythons"] == ["3.11"]
    assert conf["branches"] == ["main"]


def test_matrix_pins_mindspore_and_a_numpy_below_2():
    req = _config()["matrix"]["req"]
    assert req["mindspore"] == ["2.10.0"]
    (numpy,) = req["numpy"]
    assert int(numpy.split(".")[0]) < 2, "MindSpore 2.10 ops fail under numpy 2"


def test_benchmark_modules_import_without_mindspore():
    # asv imports every benchmark module during discovery and `asv check`; MindSpore's
    # import (~2 s) belongs in setup, where only the benchmark that needs it pays it.
    modules = ", ".join(f"bench.benchmarks.{p.stem}" for p in BENCHMARKS)
    code = f"import sys, {modules}; sys.exit('mindspore' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, f"importing bench/benchmarks loads MindSpore\n{done.stderr}"


def test_asv_check_passes():
    done = subprocess.run([sys.executable, "-m", "asv", "check", "--python=same"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "No problems found" in output, output


def _module_constants(path: Path) -> list[str]:
    """Public upper-case names assigned at the top level of a source file."""
    tree = ast.parse(path.read_text())
    return [t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
            if isinstance(t, ast.Name) and t.id.isupper() and not t.id.startswith("_")]


def test_benchmark_sizes_are_in_the_version():
    # asv compares results across commits while `version` is unchanged, so every size
    # that defines a benchmark's data must feed it: sizes live in common.SIZES only.
    elsewhere = {p.name: _module_constants(p) for p in BENCHMARKS if p.name != "common.py"}
    assert not any(elsewhere.values()), f"sizes outside common.SIZES: {elsewhere}"
    hashed = [json.loads(json.dumps(v)) for v in common.SIZES.values()]
    not_sizes = {"SUITE_VERSION", "SIZES", "VERSION", "MODELS"}  # MODELS: the params
    for name in set(_module_constants(ROOT / "bench/benchmarks/common.py")) - not_sizes:
        value = json.loads(json.dumps(getattr(common, name)))
        assert value in hashed, f"common.{name} is not part of SIZES"


def test_held_batch_loop_trains_on_held_batches_and_ends_each_hash_step(tiny_data):
    from mindrec.config import build_run_config
    from mindrec.data.criteo import NUM_FIELDS
    from mindrec.train.trainer import build

    run = build_run_config("wide_deep", "cpu-small", embedding={"kind": "hash"})
    network = build(run, tiny_data)
    index = network.hash_index
    loop = held_batch_loop(network, run, tiny_data, steps=2, warmup_steps=3)
    assert (index.step, index.stats().lookups) == (3, 3 * run.train.batch_size * NUM_FIELDS)
    admitted = index.stats().admitted
    before = [p.asnumpy().copy() for p in network.trainable_params()]
    loop()
    assert (index.step, index.stats().lookups) == (5, 5 * run.train.batch_size * NUM_FIELDS)
    assert index.stats().admitted == admitted  # the warm-up cycled over both held batches
    after = [p.asnumpy() for p in network.trainable_params()]
    assert not all(map(np.array_equal, before, after)), "the loop did not train"


def test_make_asv_machine_describes_a_new_machine_without_questions(tmp_path):
    # A fresh clone on a new machine: no ~/.asv-machine.json. Every asv command would
    # stop to ask about the machine; `make asv` describes it first, in one quiet line.
    venv = Path(sys.prefix)
    done = subprocess.run(["make", "-s", f"VENV={venv}", "-o", f"{venv}/.installed",
                           "asv-machine"], cwd=ROOT, env={**os.environ, "HOME": str(tmp_path)},
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len((done.stdout + done.stderr).splitlines()) == 1, done.stdout + done.stderr
    machines = json.loads((tmp_path / ".asv-machine.json").read_text())
    (name,) = set(machines) - {"version"}
    assert set(machines[name]) == {"machine", "os", "arch", "cpu", "num_cpu", "ram"}

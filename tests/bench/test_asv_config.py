"""The asv setup: the configuration parses and points at bench/benchmarks, and asv accepts the
benchmarks. Runs no benchmark (that takes minutes: docs/regression-tracking.md)."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


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
    code = ("import sys, bench.benchmarks.common, bench.benchmarks.train, bench.benchmarks.data, "
            "bench.benchmarks.embedding; sys.exit('mindspore' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, f"importing bench/benchmarks loads MindSpore\n{done.stderr}"


def test_asv_check_passes():
    done = subprocess.run([sys.executable, "-m", "asv", "check", "--python=same"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "No problems found" in output, output

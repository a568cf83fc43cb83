"""The run configuration a command line asks for (``train``, ``online``): ``--model``,
``--preset``, ``--config FILE.yaml``, ``--set SECTION.FIELD=VALUE`` and the flags that
set one field each. Precedence: command line > config file > preset."""
from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from mindrec.config import (DEFAULT_PRESET, MODEL_CONFIGS, PRESETS, SECTIONS, ConfigError,
                            ParallelMode, RunConfig, load_config_file,
                            run_config_from_sections)

# Flag -> the RunConfig field it sets (section, field). A flag a verb does not have, or
# leaves out, is unset (argparse default None): the config file or the preset decides,
# and 0 is a value.
RUN_FLAGS = {
    "epochs": ("train", "epochs"), "batch_size": ("train", "batch_size"),
    "seed": ("train", "seed"), "max_steps": ("train", "max_steps"),
    "warmup_steps": ("train", "warmup_steps"), "table_size": ("train", "table_size"),
    "sparse": ("train", "sparse"), "embedding": ("embedding", "kind"),
    "permit": ("embedding", "permit_filter_value"),
    "evict": ("embedding", "evict_filter_value"), "capacity": ("embedding", "capacity"),
    "mode": ("parallel", "mode"), "workers": ("parallel", "workers"),
    "checkpoint_every": ("train", "checkpoint_every"), "redis_url": ("cache", "remote_url"),
    **{name: ("online", name) for name in (
        "topic", "publish_every_s", "publish_every_steps", "checkpoint_every_steps",
        "full_every", "freeze_after_rows", "max_rows", "idle_stop_s", "broker_wait_s")},
}


def add_run_arguments(parser: argparse.ArgumentParser, set_example: str) -> None:
    """``--model``, ``--preset``, ``--config`` and ``--set`` (``set_example``: a field
    the verb's help shows)."""
    parser.add_argument("--model", choices=sorted(MODEL_CONFIGS),
                        help="required unless --config names it")
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        help=f"hyperparameters to start from (default {DEFAULT_PRESET})")
    parser.add_argument("--config", type=Path,
                        help="YAML file: model, preset and sections "
                             f"{', '.join(SECTIONS)} (fields by their config names)")
    parser.add_argument("--set", action="append", metavar="SECTION.FIELD=VALUE",
                        help=f"any config field, e.g. {set_example} (repeatable)")


def run_config_from_args(args: argparse.Namespace) -> tuple[RunConfig, str]:
    """The run and preset the command line asks for (module docstring)."""
    file = load_config_file(args.config) if args.config else {}
    sections = {name: dict(file.get(name) or {}) for name in SECTIONS}
    for flag, (section, name) in RUN_FLAGS.items():
        if getattr(args, flag, None) is not None:
            sections[section][name] = getattr(args, flag)
    for assignment in args.set or []:
        key, sep, text = assignment.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot or section not in SECTIONS:
            raise ConfigError(f"--set {assignment!r}: expected SECTION.FIELD=VALUE with "
                              f"SECTION one of {', '.join(SECTIONS)}")
        sections[section][name] = yaml.safe_load(text)
    model = args.model or file.get("model")
    if model is None:
        raise ConfigError(f"{args.verb}: no model; pass --model or set `model:` in --config")
    preset = args.preset or file.get("preset") or DEFAULT_PRESET
    where = str(args.config) if args.config else "command line"
    run = run_config_from_sections(model, preset, sections, where)
    standalone = run.parallel.mode is ParallelMode.STANDALONE
    for flag, value in (("--job-dir", getattr(args, "job_dir", None)),
                        ("--timeout", getattr(args, "timeout", None))):
        if standalone and value is not None:
            raise ConfigError(f"{flag} applies to the parallel modes only; this run is "
                              f"standalone")
    return run, preset

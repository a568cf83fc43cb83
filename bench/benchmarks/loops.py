"""The held-batch train loop that the asv suite and the micro suites time.

It lives here, not in mindrec, so that asv times every commit with the same loop.
MindSpore and mindrec are imported inside the function, so importing this module
stays cheap (asv imports every benchmark module when it discovers them).
"""
from __future__ import annotations

from collections.abc import Callable
from itertools import islice
from pathlib import Path


def held_batch_loop(network, run, data: str | Path, steps: int,
                    warmup_steps: int) -> Callable[[], None]:
    """A function that trains ``network`` for ``steps`` steps on the first ``steps``
    shuffled train batches of ``data``, which are read into memory once (no input
    pipeline in the timing).

    Each step waits for its result, as ``fit`` does. With hash tables each step also
    turns its keys into slots and ends the index step (the whole per-step cost of
    dynamic keys). ``warmup_steps`` steps run before this returns: the first compiles
    the graph, and a whole pass admits every key of a hash table.

    Args:
        network: the model, from ``mindrec.train.trainer.build(run, data)``.
        run (RunConfig): its config; batch size, table size and the seed that shuffles
            the batches come from ``run.train``.
        data: a converted dataset directory.
        steps (int): train steps per call of the returned function.
        warmup_steps (int): steps run now, cycling over the held batches.
    """
    from mindspore import Tensor

    from mindrec.train.step import TrainStep
    from mindrec.train.trainer import batches

    cfg = run.train
    index = getattr(network, "hash_index", None)  # asv: commits before hash tables lack it
    train_step = TrainStep(network)
    train_step.set_train(True)
    stream = batches(data, "train", cfg.batch_size, cfg.table_size, shuffle=True,
                     seed=cfg.seed, drop_remainder=True)
    held = [(ids, Tensor(ids), Tensor(vals), Tensor(labels))
            for ids, vals, labels in islice(stream, steps)]
    if len(held) < steps:
        raise ValueError(f"{data}: the train split holds {len(held)} batches of "
                         f"{cfg.batch_size}, fewer than the {steps} steps asked for")

    def one_step(ids, ids_tensor, vals, labels) -> None:
        if index is not None:
            ids_tensor = Tensor(index.train_lookup(ids)[0])
        train_step(ids_tensor, vals, labels).asnumpy()
        if index is not None:
            index.advance()

    for i in range(warmup_steps):
        one_step(*held[i % steps])

    def loop() -> None:
        for batch in held:
            one_step(*batch)

    return loop

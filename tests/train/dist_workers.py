"""Worker scripts for tests/train/test_distributed.py, run under msrun by ``launch``.

Usage: ``dist_workers.py sharded OUT_DIR`` | ``crash --code N`` | ``crash --sigkill``
| ``hang PID_DIR``.

``sharded`` trains a tiny model (sharded table + replicated dense weight, one Adam or
LazyAdam step) and writes ``rank<r>.npz``; rank 0 also runs the same model unsharded on
the concatenated global batch and writes ``reference.npz``.
"""
from __future__ import annotations

import argparse
import os
import signal
import time
from pathlib import Path

from bench.job.lifetime import die_with_parent

if __name__ == "__main__":  # run by msrun: die with it, even while MindSpore loads
    die_with_parent()

import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from mindrec.embedding.sharded import ShardedEmbedding
from mindrec.embedding.static import StaticEmbedding
from mindrec.train.distributed import GradientMean, in_msrun_worker, init_worker

VOCAB, DIM, FIELDS, BATCH, LR = 37, 4, 3, 6, 0.05


class TinyModel(nn.Cell):
    """Embedding rows summed over fields, a dense weight, tanh, squared error."""

    def __init__(self, embedding: nn.Cell, weight: np.ndarray, tag: str):
        super().__init__()
        self.embedding = embedding
        self.weight = Parameter(Tensor(weight), name=f"weight_{tag}")

    def construct(self, ids, labels):
        rows = self.embedding(ids)
        logits = ops.matmul(rows.sum(1), self.weight)
        return ((ops.tanh(logits) - labels) ** 2).mean(), rows


class Step(nn.Cell):
    """Loss, gradients, optional gradient averaging, one optimizer step."""

    def __init__(self, model: TinyModel, reducer: nn.Cell | None):
        super().__init__()
        params = [model.embedding.table, model.weight]
        adam = nn.LazyAdam if model.embedding.sparse else nn.Adam
        self.optimizer = adam(params, learning_rate=LR)
        self.grad = ops.value_and_grad(model, None, self.optimizer.parameters, has_aux=True)
        self.reducer = reducer

    def construct(self, ids, labels):
        (loss, rows), grads = self.grad(ids, labels)
        if self.reducer is not None:
            grads = self.reducer(grads)
        self.optimizer(grads)
        return loss, rows, grads


def table_grad(grad, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """A table gradient as a dense array, and the row indices it carries (all for dense).

    Sparse (RowTensor) gradients leave a graph as a tuple (indices, values, dense shape).
    """
    if not isinstance(grad, tuple):
        return grad.asnumpy(), np.arange(rows)
    indices, values = grad[0].asnumpy(), grad[1].asnumpy()
    out = np.zeros((rows, values.shape[-1]), np.float32)
    np.add.at(out, indices, values)
    return out, indices


def global_data(size: int):
    """The full table, dense weight, and global batch (ids, labels); same on every rank."""
    rng = np.random.default_rng(7)
    table = rng.normal(0, 0.5, (VOCAB, DIM)).astype(np.float32)
    weight = rng.normal(0, 0.5, (DIM, 1)).astype(np.float32)
    ids = rng.integers(0, VOCAB, (size * BATCH, FIELDS)).astype(np.int32)
    ids[:, 0] = 5  # one id repeated within and across ranks
    labels = rng.random((size * BATCH, 1)).astype(np.float32)
    return table, weight, ids, labels


def run_sharded(out_dir: Path) -> None:
    """One step with ShardedEmbedding per rank, and (rank 0) the unsharded reference."""
    rank, size = init_worker()
    ms.set_context(mode=ms.GRAPH_MODE)
    table, weight, ids, labels = global_data(size)
    mine = slice(rank * BATCH, (rank + 1) * BATCH)
    results, reference = {}, {}
    for sparse in (False, True):
        key = "sparse" if sparse else "dense"
        emb = ShardedEmbedding(VOCAB, DIM, sparse, init_std=0.1, rank=rank, size=size)
        emb.load_full(table)
        model = TinyModel(emb, weight, f"sharded_{key}")
        reducer = GradientMean([emb.table, model.weight], size, local=[emb.table])
        loss, rows, grads = Step(model, reducer)(Tensor(ids[mine]), Tensor(labels[mine]))
        grad, indices = table_grad(grads[0], emb.owned_rows + 1)
        results.update({f"{key}_loss": loss.asnumpy(), f"{key}_rows": rows.asnumpy(),
                        f"{key}_table_grad": grad, f"{key}_grad_indices": indices,
                        f"{key}_weight_grad": grads[1].asnumpy(),
                        f"{key}_table_after": emb.local_rows(),
                        f"{key}_weight_after": model.weight.asnumpy(),
                        f"{key}_table_shape": np.array(emb.table.shape)})
        if rank == 0:
            full = StaticEmbedding(VOCAB, DIM, sparse, init_std=0.1)
            full.table.set_data(Tensor(table))
            ref_model = TinyModel(full, weight, f"reference_{key}")
            loss, rows, grads = Step(ref_model, None)(Tensor(ids), Tensor(labels))
            reference.update({f"{key}_loss": loss.asnumpy(), f"{key}_rows": rows.asnumpy(),
                              f"{key}_table_grad": table_grad(grads[0], VOCAB)[0],
                              f"{key}_weight_grad": grads[1].asnumpy(),
                              f"{key}_table_after": full.table.asnumpy(),
                              f"{key}_weight_after": ref_model.weight.asnumpy()})
    results["global_ids"] = emb.global_ids()
    np.savez(out_dir / f"rank{rank}.npz", **results)
    if rank == 0:
        np.savez(out_dir / "reference.npz", **reference)


def run_crash(code: int, sigkill: bool) -> None:
    """Rank 1 dies mid-run while rank 0 waits in an AllReduce for it."""
    rank, _ = init_worker()
    all_reduce = ops.AllReduce()
    all_reduce(Tensor(np.ones(4, np.float32)))
    if rank == 1:
        print(f"rank 1 is about to die at {time.time():.3f}", flush=True)
        if sigkill:
            os.kill(os.getpid(), signal.SIGKILL)
        os._exit(code)
    while True:
        all_reduce(Tensor(np.ones(4, np.float32)))


def run_hang(pid_dir: Path) -> None:
    """Every worker records its pid (before joining the cluster), then sleeps until killed."""
    if in_msrun_worker():
        (pid_dir / f"rank{os.environ['RANK_ID']}.pid").write_text(str(os.getpid()))
    init_worker()
    while True:
        time.sleep(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("sharded").add_argument("out_dir", type=Path)
    crash = sub.add_parser("crash")
    crash.add_argument("--code", type=int, default=3)
    crash.add_argument("--sigkill", action="store_true")
    sub.add_parser("hang").add_argument("pid_dir", type=Path)
    args = parser.parse_args()
    if args.command == "sharded":
        run_sharded(args.out_dir)
    elif args.command == "crash":
        run_crash(args.code, args.sigkill)
    else:
        run_hang(args.pid_dir)


if __name__ == "__main__":
    main()

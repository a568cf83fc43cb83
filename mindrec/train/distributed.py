"""The worker side of a multi-worker job on CPU: joining the msrun cluster and averaging
gradients inside the compiled step.

Jobs are started by the harness's launcher (:mod:`bench.job.launcher`, MindSpore-free),
which documents how msrun behaves; this module runs inside the workers it starts.
"""
from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable, Sequence

import mindspore as ms
from mindspore import Parameter, nn, ops
from mindspore.communication import get_group_size, get_rank, init


def in_msrun_worker() -> bool:
    """True inside a worker process started by msrun (not its scheduler)."""
    return os.environ.get("MS_ROLE") == "MS_WORKER" and "MS_SCHED_HOST" in os.environ


def init_worker(backend_device: str = "CPU") -> tuple[int, int]:
    """Join the msrun cluster: set the device, ``init()`` the collectives, return (rank, size).

    On CPU ``init()`` picks the ``mccl`` backend. In msrun's scheduler process this call
    serves the cluster and then exits the process; it returns only in workers.
    """
    if "MS_ROLE" not in os.environ:
        raise RuntimeError("init_worker() must run in a process started by msrun "
                           "(MS_ROLE is not set); start the job with launch()")
    ms.set_device(backend_device)
    if in_msrun_worker():
        _wait_for_scheduler(float(os.environ.get("MS_TOPO_TIMEOUT", "600")))
    init()
    return get_rank(), get_group_size()


def configure_parallel(hybrid: bool, device: str, workers: int) -> None:
    """Hybrid mode on GPU and Ascend: MindSpore's semi-auto parallel, which shards the
    row-sliced tables and inserts the data-parallel gradient collectives itself. (CPU
    refuses semi-auto parallel, "Invalid backend: CPU"; there the collectives are ours.)"""
    if hybrid and device != "CPU":
        ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.SEMI_AUTO_PARALLEL,
                                     device_num=workers, gradients_mean=True)


def _wait_for_scheduler(timeout_s: float) -> None:
    """Block until msrun's scheduler accepts TCP connections (or ``timeout_s`` passes).

    A worker whose first registration attempt finds the scheduler not yet listening
    enters a reconnect loop that measured about 10 s longer than a clean start.
    """
    address = (os.environ["MS_SCHED_HOST"], int(os.environ["MS_SCHED_PORT"]))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(address, timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)


class GradientMean(nn.Cell):
    """Data-parallel averaging of dense gradients: ``AllReduce(sum) / size`` on CPU.

    Gradients of the parameters in ``local`` (the tables of ``ShardedEmbedding``, whose
    rows differ between ranks and already get the summed gradients of all ranks) pass
    through unchanged. Sparse (RowTensor) gradients of replicated parameters are not
    supported: AllReduce has no sparse form, and ``nn.DistributedGradReducer`` AllGathers
    them, which makes lazy optimizers step ids seen on several ranks more than once.

    Args:
        params (list[Parameter]): the parameters, in the order of the gradient tuple.
        size (int): number of workers.
        local (list[Parameter]): parameters not to average.

    Shapes:
        grads: tuple of tensors shaped like ``params`` -> the same.
    """

    def __init__(self, params: Sequence[Parameter], size: int,
                 local: Iterable[Parameter] = ()):
        super().__init__()
        local_ids = {id(param) for param in local}
        self.reduce = tuple(id(param) not in local_ids for param in params)
        self.all_reduce = ops.AllReduce()
        self.scale = 1.0 / size

    def construct(self, grads):
        out = ()
        for grad, reduce in zip(grads, self.reduce):
            out += (self.all_reduce(grad) * self.scale if reduce else grad,)
        return out

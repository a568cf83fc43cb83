"""A tiny hash-table model trained on raw lines as the online trainer trains it, shared
by the tests of model versions (tests/stream) and serving (tests/serve)."""
from mindspore import Tensor

from mindrec.config import build_run_config
from mindrec.data.criteo import encode_keys, parse_lines
from mindrec.models.registry import build_model
from mindrec.train.step import Predict, TrainStep, configure_runtime

BATCH = 256
CAPACITY = 20_000


def tiny_run(model="wide_deep", **embedding):
    """A hash-table run small enough to train in milliseconds a step."""
    sizes = {"emb_dim": 4, "deep_layers": [16, 8]}
    if model == "dcn":
        sizes = {"emb_dim": 4, "deep_layers": [16], "cross_layers": 1}
    return build_run_config(model, "cpu-small", model_overrides=sizes,
                            embedding={"kind": "hash", "capacity": CAPACITY, **embedding},
                            train_overrides={"batch_size": BATCH})


class Trainer:
    """A network trained on consecutive batches of raw lines, as the online trainer does,
    and its own predictions (keys looked up without admitting them)."""

    def __init__(self, run, lines):
        configure_runtime(run.train.seed)
        self.run, self.lines, self.at = run, lines, 0
        self.network = build_model(run, CAPACITY)
        self.step = TrainStep(self.network)
        self.step.set_train(True)
        self.predict_cell = Predict(self.network)

    def train(self, steps=1):
        index = self.network.hash_index
        for _ in range(steps):
            batch = self.lines[self.at:self.at + BATCH]
            self.at += BATCH
            keys, vals, labels = encode_keys(parse_lines(batch, source="train"))
            self.step(Tensor(index.train_lookup(keys)[0]), Tensor(vals), Tensor(labels[:, None]))
            index.advance()
        return self

    def predict(self, lines):
        keys, vals, _ = encode_keys(parse_lines(lines, source="check"))
        slots = self.network.hash_index.lookup(keys)
        return self.predict_cell(Tensor(slots), Tensor(vals)).asnumpy()[:, 0]

"""Sizes and seeds of the micro suites (fixed: a saved run is compared with the next)."""

SEED = 11
VOCAB = 50_000  # target vocabulary of the synthetic files
RAW_ROWS = 111_000  # after the 90/10 split the train file holds about 100k rows
SMALL_RAW_ROWS = 20_000  # the parser's input
CHUNK_ROWS = 100_000  # rows of the pre-parsed chunk the encoder gets
GENERATOR_ROWS = 50_000  # rows per synthetic-generator call
BATCH = 1000  # rows per batch everywhere
EMBEDDING_ROWS = 100_000  # the small table of the embedding step
EMBEDDING_DIM = 16
AUC_ROWS = 1_000_000
SAMPLER_STEPS = 5  # train steps per round of the sampler-overhead loop
SAMPLER_ROUNDS = 20
SAMPLER_PAIRS = 15  # alternating with/without pairs for the sampler's ratio
HASH_KEYS = 1_000_000  # keys held by the hash index / dict of the hash benchmarks
HASH_TRAIN_STEPS = 20  # held batches per round of the static-vs-hash train-step loop
HASH_RATIO_PAIRS = 10  # alternating hash/static rounds for the train-step ratio

"""Speed benchmarks (`python -m train.benchmark`), one JSON line per job.

  jobs         the subcommands and the kNN job (peer: faiss)
  flows        training / log_prob / sample / compile timing (peer: torch)
  peer_models  the peer's RealNVP architectures built in nbflows
  knn          the neighbour index build of a dataset's shape
  resume       time to resume a run from its checkpoint
"""

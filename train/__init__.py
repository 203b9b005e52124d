"""Training, evaluation, experiments and benchmarks of nbflows models.

train/ builds on the library (nbflows/ never imports it). Its rooms:

  loop/         the training loop: trainer (train_and_evaluate), state
                (TrainState, optimizer), checkpoint (orbax items on top of
                nbflows.checkpoint), checkpoint_conversion, sharding,
                metric_writer, fitting (closed-form models: the KDE)
  evaluation/   evaluate (split means, samples, eval.json), requested_metrics
                (which metrics eval.json holds), sample_quality (Frechet
                distance, PRD)
  experiments/  compare (several configs, one table), report (the README's
                tables), novelty (paper 1, Sec. 3.2), augment (paper 3,
                eq. 16)
  benchmarks/   jobs (the subcommands), flows, peer_models, knn, resume

The entry points stay at the top level, each only its command line:
`python -m train.main`, `train.evaluate`, `train.compare`, `train.report`,
`train.novelty`, `train.augment`, `train.benchmark`,
`train.convert_checkpoint`.
"""

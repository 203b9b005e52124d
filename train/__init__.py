"""Training and evaluation of nbflows models.

  trainer            train_and_evaluate(config, workdir): the training loop
  evaluate           test evaluation of a run's best checkpoint -> eval.json
  requested_metrics  which metrics eval.json holds, and their values
  sample_quality     Frechet distance and PRD on an offline classifier
  fitting            models fitted in closed form, not trained (the KDE)
  state              TrainState and the optimizer
  checkpoint         orbax checkpoints (latest N + best) and the saved config
  sharding           the ("data",) device mesh and batch sharding
  metric_writer      metrics.jsonl and TensorBoard summaries
  main               python -m train.main --config ... --workdir ...
  benchmark          python -m train.benchmark ...: speed benchmarks
"""

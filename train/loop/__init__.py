"""The training loop: a config and a workdir in, checkpoints and eval.json out.

  trainer                train_and_evaluate(config, workdir): initial state,
                         steps (validation, early stopping, checkpoints),
                         final report
  state                  TrainState, the optimizer and its schedule
  checkpoint             the trainer's orbax items (opt_state, trainer, loop)
                         beside the library's (nbflows.checkpoint)
  checkpoint_conversion  old-layout workdirs rewritten into the current one
  sharding               the ("data",) device mesh, batch and state sharding
  metric_writer          metrics.jsonl and TensorBoard summaries
  fitting                models fitted in closed form, not trained (the KDE)
"""

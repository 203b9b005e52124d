"""The experiments' defaults that their command lines show.

Held apart from the experiment modules (which import JAX and the trainer),
so that ``python -m train.compare --help`` (and report, beta_sweep) answers
in under 2 s; the experiments take their defaults from here.
"""
# train.experiments.compare: the test metrics of every run.
COMPARE_METRICS = "bpd,marginal_bpd"
# train.experiments.report: the rows of the README's results tables.
REPORT_ROWS = ("rnvp", "ccrnvp", "ncl", "nct", "nct_kmeans", "kde")
# train.experiments.beta_sweep: the betas of Fig. 3 (b) (10, 50, 100, 400;
# and 1) and the steps per beta. On digits the validation loss is best at
# step 500 for beta = 400 in a 1,500-step run (the 1,294 training digits
# are overfitted after that) and at 750-1,000 for the other betas in 1,000
# steps; 1,000 keeps the six-beta sweep to 8 minutes on two CPU cores.
BETAS = (1.0, 10.0, 100.0, 400.0)
BETA_SWEEP_STEPS = 1000

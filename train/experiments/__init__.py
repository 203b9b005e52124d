"""Experiments built on the loop and the evaluation: the papers' tables.

  compare   trains several configs under the same overrides, one table
  report    the README's results tables and plot over seeds (paper 1)
  novelty   one-class novelty detection (paper 1, Sec. 3.2, Table 4)
  augment   generative data augmentation with an Exemplar VAE (paper 3,
            eq. 16)
"""

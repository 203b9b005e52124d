"""NCT on k-means neighbourhoods (paper 1, App. B.5) on digits.

configs/nct_digits.py with neighbourhoods from clustering instead of kNN:
the PCA features of the training images are clustered by k-means into
`num_clusters` = 100 clusters (the paper's number for MNIST), and every
image's neighbourhood is the 5 training images nearest its cluster's
centre (its prototypes), for training and test alike. No label is used.
With 100 distinct neighbourhoods, eq. 4's marginal is summed exactly over
the clusters, weighted by their counts (`nbflows.marginal`), and is what
eval.json's test_marginal_bpd holds (marginal_method "exact").

Expected (paper 1, Table B.2: MNIST 0.444 conditional, 0.465 marginal;
Table B.1 gives 0.462 / 0.464 for kNN NCT): the exact marginal within a few
per cent of the conditional test bits/dim, both above kNN NCT's
conditional (clusters are more diverse than nearest neighbours).
"""
from configs import nct_digits


def get_config(arg=None):
  """Returns the config; `arg="quick"` gives a smoke-test version."""
  return with_kmeans_neighbours(nct_digits.get_config(arg))


def with_kmeans_neighbours(config):
  """`config` with App. B.5's k-means neighbourhoods (neighbours.* only)."""
  config.neighbours.kind = "kmeans"
  config.neighbours.num_clusters = 100             # App. B.5, MNIST
  config.neighbours.num_prototypes = config.neighbours.k   # the model's k
  return config

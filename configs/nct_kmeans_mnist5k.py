"""NCT on k-means neighbourhoods (paper 1, App. B.5) on mnist5k.

configs/nct_kmeans_digits.py on the 5,000-image MNIST subset (100 clusters
of its 3,600 training images); see that file for what the run should show.
"""
from configs import nct_kmeans_digits
from configs import nct_mnist5k


def get_config(arg=None):
  """Returns the config; `arg="quick"` gives a smoke-test version."""
  return nct_kmeans_digits.with_kmeans_neighbours(nct_mnist5k.get_config(arg))

"""Datasets (`sources`, `toy2d`) and the tf.data input pipeline (`pipeline`).

`nbflows.data.pipeline` imports TensorFlow, so it is not imported here; import
it where batches are needed.
"""
from nbflows.data.sources import DatasetInfo, NAMES, Split, Splits, dataset_info, load

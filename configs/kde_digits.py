"""Kernel density estimation (paper 1, eq. 2) on digits.

The non-parametric anchor: a Gaussian kernel on every training image, its
bandwidth chosen on the validation split; no gradient steps.

Expected: test bits/dim (eval.json `test_bpd`) well above every flow's.
Measured (`python -m train.main --config configs/kde_digits.py --workdir DIR
--config.eval.metrics=bpd,marginal_bpd,fd,prd`, train.loop.fitting): bandwidth
2.21 (data units), validation 3.3615 and test 3.3385 bits/dim.
"""
from configs import default


def get_config(arg=None):
  """Returns the config; `arg="quick"` gives a smoke-test version."""
  config = default.get_config(arg)
  config.model = "kde"
  return config

"""Base densities of the flows (over whole events, log-densities of shape [B]).

The VAE family's priors are `nbflows.distributions.priors`.
"""
from nbflows.distributions.gaussian import diagonal_gaussian_log_prob, diagonal_normal_log_prob, diagonal_normal_sample, standard_normal_log_prob, standard_normal_sample

"""Training and evaluation objectives."""
from nbflows.objectives.iwae import ImportanceEstimate, importance_log_likelihood, importance_statistics
from nbflows.objectives.contrastive import ContrastiveSettings, contrastive_loss, hinge, roll_negatives
from nbflows.objectives.elbo import bernoulli_log_prob, elbo_terms, importance_log_weights, kl_estimate, reparameterised_sample, training_loss
from nbflows.objectives.likelihood import bits_per_dim_loss, likelihood_loss

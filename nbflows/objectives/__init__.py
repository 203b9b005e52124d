"""Training and evaluation objectives."""
from nbflows.objectives.iwae import ImportanceEstimate, importance_log_likelihood, importance_statistics
from nbflows.objectives.contrastive import ContrastiveSettings, contrastive_loss, hinge, roll_negatives

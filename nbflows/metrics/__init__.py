"""Evaluation metrics: novelty-detection AUROC, Frechet distance and PRD."""
from nbflows.metrics.roc import auroc, roc_curve
from nbflows.metrics.feature_net import ClassifierSettings, FeatureNet, load_or_train, sample_quality
from nbflows.metrics.frechet import frechet_distance, frechet_distance_from_statistics, gaussian_statistics
from nbflows.metrics.prd import PRDResult, prd_curve, prd_score

"""Neighbourhoods of training examples: PCA features, exact kNN, k-means (paper 1, App. B.2, B.5)."""

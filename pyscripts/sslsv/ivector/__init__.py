"""Kaldi's i-vector system in PyTorch: sid frame features, diagonal and full-covariance UBMs, frame
posteriors, the augmented total-variability extractor, and i-vector extraction."""

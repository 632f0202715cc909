"""Clustering of utterance vectors (i-vectors, embeddings) into pseudo speakers.

Every method is a scikit-learn-style estimator (``fit``, ``fit_predict``, ``labels_``; the deep methods
also ``predict`` and ``predict_proba``) registered by name (:mod:`.registry`) and configured by a YAML
file under ``conf/cluster/``. :mod:`.metrics` scores a clustering against true labels and the inputs;
:mod:`.inputs` reads vectors from scp/ark/npy and normalises them.
"""

from .registry import build, estimator_class, estimators, method_config, methods, register, takes_n_clusters

__all__ = ["build", "estimator_class", "estimators", "method_config", "methods", "register",
           "takes_n_clusters"]

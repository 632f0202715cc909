"""Corpus preparation: each corpus module writes Kaldi data dirs (and a trials list for its test set)."""

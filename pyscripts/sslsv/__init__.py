"""sslsv: clustering-based self-supervised speaker verification, a Kaldi-style recipe in Python.

The package is the recipe's library; the scripts in ``pyscripts/`` are thin command-line entry points.
"""

__version__ = "0.1.0"

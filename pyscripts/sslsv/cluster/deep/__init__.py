"""Deep information-maximisation clustering (IMSAT, CIMC, CAMSAT and their ablations) in PyTorch."""

"""Training: typed configs, the training loop of the stages, and growing a trained generator."""

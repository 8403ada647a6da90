"""Training data: cached face crops with landmarks, datasets and augmentation."""

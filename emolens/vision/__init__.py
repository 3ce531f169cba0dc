"""Face detection, alignment, quality and preprocessing: frame pixels to model-ready crops."""

"""Evaluation metrics and report building (the model card)."""

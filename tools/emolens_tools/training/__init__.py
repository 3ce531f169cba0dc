"""Training, export and evaluation helpers for the smile and emotion CNNs.

Needs the ``train`` extra (PyTorch); the runtime library never imports this package.
"""

"""Benchmarks of the gan_lightning training stack; not installed with the package (run them from a checkout).

`overhead`: `scripts/train.py`'s Lightning training against a plain PyTorch loop doing the same work.
"""

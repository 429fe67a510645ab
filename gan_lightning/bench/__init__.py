"""Benchmarks: the Trainer against a plain loop over the same objective phases, the data loaders, the FID extractor."""

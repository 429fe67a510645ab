"""The commands (gan-train, gan-sample, gan-evaluate, gan-prepare, gan-train-classifier, the MNIST export): each a
module with `build_parser()`, `run(cfg)` and `main(argv)`, as `base.py` describes."""

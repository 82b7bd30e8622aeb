"""seqmodels: train and compare recurrent sequence models with Lightning and Hydra."""

__version__ = "0.1.0"

"""Data: preprocessing fitted on training data, datasets, the DataLoader and augmentation.

- ``ZeroCenter``, ``Standardize``, ``PCAWhiten``: statistics learnt in ``fit(x_train)``.
- ``ArrayDataset``, ``DataLoader``: batches gathered in C++ straight from arrays or
  memmaps, shuffled by ``gk.manual_seed``, prepared on background threads.
- ``RandomCrop``, ``RandomHorizontalFlip``, ``Normalize``, ``Compose``: augmentation
  kernels on NCHW float32 batches.
"""
from .dataset import ArrayDataset
from .loader import DataLoader
from .preprocessing import PCAWhiten, Standardize, ZeroCenter
from .transforms import Compose, Normalize, RandomCrop, RandomHorizontalFlip

__all__ = ["ZeroCenter", "Standardize", "PCAWhiten", "ArrayDataset", "DataLoader", "RandomCrop",
           "RandomHorizontalFlip", "Normalize", "Compose"]

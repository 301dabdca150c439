"""Test set-up shared by the whole suite.

Without a GPU, Triton kernels run through Triton's interpreter: TRITON_INTERPRET must be set before
any kernel module is imported, so it is set here, before the tests import torchinit.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)

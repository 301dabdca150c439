"""Test set-up shared by the whole suite.

Without a GPU, Triton kernels run through Triton's interpreter: TRITON_INTERPRET must be set before
any kernel module is imported, so it is set here, before the tests import torchinit.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402


@pytest.fixture
def captured_graphs():
    """A torch.compile backend that records the FX graphs Dynamo hands it: ``(backend, graphs)``."""
    graphs = []

    def backend(gm, inputs):
        graphs.append(gm)
        return gm.forward

    return backend, graphs


@pytest.fixture
def cpu_mesh():
    """A one-process gloo process group and its one-device CPU mesh, torn down after the test."""
    import socket

    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        yield init_device_mesh("cpu", (1,))
    finally:
        dist.destroy_process_group()


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)

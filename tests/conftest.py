import os
import sys
from pathlib import Path

import pytest

#: ``MASKKIT_TEST_GPU=1 pytest -m gpu`` runs the GPU subset alone; otherwise every test (and every
#: process a test starts) sees no GPU, so device "auto" is the CPU on any host: bf16 noise would
#: break the exact-equality tests, and torchrun ranks would pick GPUs the host may not have
GPU_RUN = os.environ.get("MASKKIT_TEST_GPU") == "1"
if not GPU_RUN:
    os.environ["CUDA_VISIBLE_DEVICES"] = ""  # read when CUDA initialises, so before torch is imported

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
# one thread: tiny test models gain nothing from two, and oversubscribed CPUs make OpenMP spin
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MASKKIT_THREADS", "1")  # commands set torch's threads; keep the suite on one
os.environ.setdefault("MPLBACKEND", "Agg")

import toy  # noqa: E402,F401  (registers the "toy" modality)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if GPU_RUN and "gpu" not in item.keywords:
            item.add_marker(pytest.mark.skip(reason="MASKKIT_TEST_GPU=1 runs only the tests marked gpu"))
        elif not GPU_RUN and "gpu" in item.keywords:
            item.add_marker(pytest.mark.skip(reason="GPU test: run with MASKKIT_TEST_GPU=1 pytest -m gpu"))


@pytest.fixture
def toy_config(tmp_path):
    from maskkit.train.config import TrainConfig

    def make(**kw):
        base = dict(modality="toy", model="nano", epochs=1, batch_size=16, out=str(tmp_path / "run"),
                    progress=False, log_every=2, warmup_epochs=0.5, base_lr=1e-3)
        base.update(kw)
        return TrainConfig(**base)

    return make

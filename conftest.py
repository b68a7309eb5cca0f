"""Repository-level pytest configuration (the test fixtures live in tests/conftest.py).

``--doctest-modules`` imports every module under ``lowrank_core/``; the PyTorch adapter
``lowrank_core.training.torch`` imports torch, an optional extra, so it is collected
only when torch is installed (its tests in tests/training skip cleanly without it).
"""

import importlib.util

collect_ignore = [] if importlib.util.find_spec("torch") else ["lowrank_core/training/torch.py"]

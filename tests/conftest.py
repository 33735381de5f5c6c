import os

import pytest
import torch
from hypothesis import HealthCheck, settings

# CI must pass on any machine of the project's kind, quiet or loaded: no per-example deadline and no
# too_slow health check (a loaded machine is slow, which is not a bug), and a fixed example sequence
# (derandomize, seeded from each test's name) so a fresh clone runs exactly the examples that passed
# here. HYPOTHESIS_PROFILE=explore searches randomly and longer, for bug hunting.
settings.register_profile("ci", deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("explore", deadline=None, max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA GPU on this machine")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)

import sys
from pathlib import Path

import pytest

# md_fakes.py (offline exchange doubles) lives next to the tests; the suite's import mode does not add this dir
sys.path.insert(0, str(Path(__file__).parent))

from trading.marketdata.sim import SimVenue


@pytest.fixture(scope="session")
def sim() -> SimVenue:
    return SimVenue()


@pytest.fixture(scope="session")
def sim_bars_100k(sim):
    """100,000 one-minute bars per symbol (about 70 days), shared by the stylised-fact tests."""
    return sim.generate_bars(sim.config.origin_ns, 100_000)

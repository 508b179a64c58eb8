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


@pytest.fixture(scope="session")
def structured_sim_bars():
    """The same seed with the platform's predictable structure on (structure=1), 20,000 bars per symbol."""
    from trading.marketdata.sim import SimConfig

    v = SimVenue(SimConfig(structure=1.0))
    return v.generate_bars(v.config.origin_ns, 20_000)

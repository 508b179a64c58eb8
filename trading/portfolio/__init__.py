"""Portfolio maths (pure: numpy + cvxpy): covariance estimators, mean-variance / Black-Litterman / Kelly /
risk parity, constraints with infeasibility diagnosis, rebalancing (drift bands, cost-aware, tax lots),
staleness of stored weights, performance attribution, and the target-weights record that the
``Rebalance`` strategy trades.

Names are resolved lazily (PEP 562): ``trading.portfolio.tax`` or ``.staleness`` in the stream worker must
not load cvxpy (~1.5 s) through this package's import.
"""

import sys
import types
from importlib import import_module

_WHERE = {
    "View": "black_litterman", "black_litterman": "black_litterman",
    "Constraints": "constraints", "Costs": "constraints",
    "ESTIMATORS": "covariance", "estimate_cov": "covariance", "ledoit_wolf": "covariance",
    "returns_from_prices": "covariance",
    "ConstraintError": "errors", "InfeasibleError": "errors", "InsufficientDataError": "errors",
    "ModelError": "errors", "PortfolioError": "errors", "SolverError": "errors", "TaxLotError": "errors",
    "MODELS": "optimizer", "Solution": "optimizer", "efficient_frontier": "optimizer", "kelly": "optimizer",
    "optimize": "optimizer",
    "TargetWeights": "record", "rebalance_weights": "record",
    "risk_contributions": "risk_parity", "risk_parity": "risk_parity",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'trading.portfolio' has no attribute {name!r}")
    value = getattr(import_module(f"trading.portfolio.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value) -> None:
        # The import system binds each loaded submodule on its package.  Two submodules share their name
        # with their main function (black_litterman, risk_parity): the package's name is the function, as
        # it was when this package imported everything eagerly, so that binding is not kept.
        if isinstance(value, types.ModuleType) and _WHERE.get(name) == name:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

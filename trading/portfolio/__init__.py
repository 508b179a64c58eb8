"""Portfolio maths (pure: numpy + cvxpy): covariance estimators, mean-variance / Black-Litterman / Kelly /
risk parity, constraints with infeasibility diagnosis, rebalancing (drift bands, cost-aware, tax lots),
and the target-weights record that the ``Rebalance`` strategy trades."""

from trading.portfolio.black_litterman import View, black_litterman
from trading.portfolio.constraints import Constraints, Costs
from trading.portfolio.covariance import ESTIMATORS, estimate_cov, ledoit_wolf, returns_from_prices
from trading.portfolio.errors import (ConstraintError, InfeasibleError, InsufficientDataError, ModelError,
                                      PortfolioError, SolverError, TaxLotError)
from trading.portfolio.optimizer import MODELS, Solution, efficient_frontier, kelly, optimize
from trading.portfolio.record import TargetWeights, rebalance_weights
from trading.portfolio.risk_parity import risk_contributions, risk_parity

__all__ = [
    "ESTIMATORS", "MODELS", "ConstraintError", "Constraints", "Costs", "InfeasibleError", "InsufficientDataError",
    "ModelError", "PortfolioError", "Solution", "SolverError", "TargetWeights", "TaxLotError", "View",
    "black_litterman", "efficient_frontier", "estimate_cov", "kelly", "ledoit_wolf", "optimize",
    "rebalance_weights", "returns_from_prices", "risk_contributions", "risk_parity",
]

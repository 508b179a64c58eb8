"""Black-Litterman: a market-implied prior of expected returns, blended with views held with confidence.

Prior: pi = delta * S * w_mkt (reverse optimisation; w_mkt from market caps, or equal weights when none).
Views: P mu = Q + e, e ~ N(0, Omega); absolute ("SOL returns 10%") or relative ("ETH beats BTC by 2%"),
e.g. produced from ML signals.  Omega from confidence:
- ``tau``: He & Litterman, Omega = diag(tau * P S P') (each view as uncertain as the prior on it);
- ``idzorek``: Idzorek's confidence in [0, 1], omega_k = tau * (1 - c_k) / c_k * p_k S p_k'
  (c = 1 is certainty: the posterior satisfies the view exactly; c -> 0 ignores it).
Posterior mean mu = pi + tau S P' (tau P S P' + Omega)^-1 (Q - P pi), written in this form (not the
precision form) so that Omega = 0 (full confidence) is well defined.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from trading.portfolio.errors import ModelError


@dataclass(frozen=True)
class View:
    """``asset`` is expected to return ``q``; with ``versus``, to out-perform ``versus`` by ``q``."""

    asset: str
    q: float
    confidence: float = 0.5
    versus: str | None = None

    @classmethod
    def from_dict(cls, d: Mapping) -> "View":
        return cls(str(d["asset"]), float(d["q"]), float(d.get("confidence", 0.5)), d.get("versus"))


def market_weights(symbols: Sequence[str], market_caps: Mapping[str, float] | None = None) -> np.ndarray:
    """Cap weights, or equal weights when no caps are given."""
    if market_caps is None:
        return np.full(len(symbols), 1.0 / len(symbols))
    missing = [s for s in symbols if s not in market_caps]
    if missing:
        raise ModelError(f"market caps missing for {missing}")
    caps = np.array([float(market_caps[s]) for s in symbols])
    if np.any(caps <= 0):
        raise ModelError("market caps must be > 0")
    return caps / caps.sum()


def implied_returns(cov: np.ndarray, w_mkt: np.ndarray, risk_aversion: float) -> np.ndarray:
    """pi = delta S w: the returns for which the market portfolio is mean-variance optimal."""
    if not risk_aversion > 0:
        raise ModelError(f"risk aversion must be > 0, got {risk_aversion}")
    return risk_aversion * np.asarray(cov) @ np.asarray(w_mkt)


def view_matrices(views: Sequence[View], symbols: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(P, Q, confidences) of the views over ``symbols``."""
    index = {s: i for i, s in enumerate(symbols)}
    P = np.zeros((len(views), len(symbols)))
    for k, v in enumerate(views):
        for name in (v.asset, v.versus):
            if name is not None and name not in index:
                raise ModelError(f"view {k} refers to unknown symbol {name!r}")
        if not 0 < v.confidence <= 1:
            raise ModelError(f"view {k} confidence must be in (0, 1], got {v.confidence}")
        if v.versus == v.asset:
            raise ModelError(f"view {k} compares {v.asset!r} with itself")
        P[k, index[v.asset]] = 1.0
        if v.versus is not None:
            P[k, index[v.versus]] = -1.0
    return P, np.array([v.q for v in views], dtype=float), np.array([v.confidence for v in views])


def omega(P: np.ndarray, cov: np.ndarray, tau: float, method: str = "idzorek",
          confidences: np.ndarray | None = None) -> np.ndarray:
    base = np.diag(tau * P @ cov @ P.T)
    if method == "tau":
        return np.diag(base)
    if method == "idzorek":
        if confidences is None:
            raise ModelError("idzorek omega needs confidences")
        c = np.asarray(confidences, dtype=float)
        return np.diag(base * (1.0 - c) / c)
    raise ModelError(f"unknown omega method {method!r}; use 'tau' or 'idzorek'")


def posterior(pi: np.ndarray, cov: np.ndarray, P: np.ndarray, Q: np.ndarray, Omega: np.ndarray,
              tau: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Posterior (mean, covariance of returns) of Black-Litterman."""
    if not tau > 0:
        raise ModelError(f"tau must be > 0, got {tau}")
    ts = tau * np.asarray(cov)
    if len(Q) == 0:
        return np.asarray(pi, dtype=float), np.asarray(cov) + ts
    middle = P @ ts @ P.T + Omega
    try:
        gain = np.linalg.solve(middle, P @ ts).T  # tau S P' (tau P S P' + Omega)^-1
    except np.linalg.LinAlgError:
        raise ModelError("views are linearly dependent with full confidence (singular P tau S P' + Omega)") from None
    mu = pi + gain @ (Q - P @ pi)
    cov_post = cov + ts - gain @ P @ ts
    return mu, (cov_post + cov_post.T) / 2


def black_litterman(symbols: Sequence[str], cov: np.ndarray, views: Sequence[View], *, risk_aversion: float = 2.5,
                    tau: float = 0.05, market_caps: Mapping[str, float] | None = None,
                    omega_method: str = "idzorek") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(posterior mean, posterior covariance, prior pi) from the market-implied prior and ``views``."""
    pi = implied_returns(cov, market_weights(symbols, market_caps), risk_aversion)
    P, Q, conf = view_matrices(views, symbols)
    mu, cov_post = posterior(pi, cov, P, Q, omega(P, cov, tau, omega_method, conf), tau)
    return mu, cov_post, pi

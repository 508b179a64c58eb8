"""Pure trading domain: records, market data simulation, venue, strategies, risk, portfolio maths.

Nothing here imports Dagster, Faust, SQL drivers or HTTP clients: the same code runs in backtests
(driven by Dagster or the CLI) and in the live stream (driven by Faust).
"""

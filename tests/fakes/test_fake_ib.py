"""FakeIB answers everything the real ib_async client asks when it connects with its defaults, and reports orders,
executions, positions and cash the way TWS does (the adapter's tests cover the rest)."""

from __future__ import annotations

import asyncio
import time

from ib_async import IB, LimitOrder, MarketOrder, Stock
from ib_async import util as ib_util

from tests.fakes.ib import ACCOUNT, FakeIB


def test_default_connect_sync_trade_and_reports():
    fake = FakeIB()
    host, port = fake.start()

    async def main():
        ib_util.getLoop.cache_clear()  # ib_async 2.0.1 caches the first event loop it saw (another test's)
        ib = IB()
        t0 = time.monotonic()
        await ib.connectAsync(host, port, clientId=5, timeout=2, raiseSyncErrors=True)  # every start-up request
        assert time.monotonic() - t0 < 1.5 and ib.managedAccounts() == [ACCOUNT]
        aapl = Stock("AAPL", "SMART", "USD")
        market = MarketOrder("BUY", 7)
        market.orderRef = "ref-m"
        trade = ib.placeOrder(aapl, market)
        limit = LimitOrder("SELL", 2, 250.0)
        limit.orderRef = "ref-l"
        resting = ib.placeOrder(aapl, limit)
        await asyncio.sleep(0.2)
        assert trade.orderStatus.status == "Filled" and trade.orderStatus.filled == 7
        (fill,) = trade.fills
        assert (fill.execution.orderRef, fill.execution.side, fill.execution.shares, fill.execution.price) == (
            "ref-m", "BOT", 7.0, 200.0)
        assert fill.commissionReport.commission == 0.7 and fill.commissionReport.currency == "USD"
        assert resting.orderStatus.status == "Submitted" and resting.order.permId > 0
        opened = await ib.reqAllOpenOrdersAsync()
        assert [t.order.orderRef for t in opened] == ["ref-l"]
        executions = await ib.reqExecutionsAsync()
        assert [f.execution.orderRef for f in executions] == ["ref-m"]
        positions = await ib.reqPositionsAsync()
        assert [(p.contract.symbol, p.position) for p in positions] == [("AAPL", 7.0)]
        cash = {v.currency: v.value for v in ib.accountValues() if v.tag == "CashBalance"}
        assert cash == {"USD": "98599.3"}  # 100000 - 7 x 200 - 0.7 commission
        ib.cancelOrder(resting.order)
        await asyncio.sleep(0.2)
        assert resting.orderStatus.status == "Cancelled"
        completed = await ib.reqCompletedOrdersAsync(True)
        assert sorted((t.order.orderRef, t.orderStatus.status) for t in completed) == [
            ("ref-l", "Cancelled"), ("ref-m", "Filled")]
        ib.disconnect()

    try:
        asyncio.run(main())
    finally:
        fake.stop()

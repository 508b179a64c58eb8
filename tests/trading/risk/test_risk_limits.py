"""Limits files (YAML/TOML + overrides), their validation errors, and runtime limit changes."""

from __future__ import annotations

from decimal import Decimal

import pytest

from trading.risk import RiskConfigError, RiskInputError, RiskLimits, load_limits

YAML = """
restricted_symbols: [DOGE/USDT]
duplicate_window_s: 0.5
sector_map: {BTC/USDT: majors, ETH/USDT: majors, SOL/USDT: alts}
symbol_defaults: {collar_bps: 300, max_order_notional: 100000}
symbols:
  BTC/USDT: {tick_size: 0.01, lot_size: 0.00001, collar_bps: 200, max_order_quantity: 2, max_position: 5}
account: {max_gross_exposure: 1000000, max_net_exposure: 500000, max_open_orders: 500, max_leverage: 3}
strategy_defaults: {max_orders_per_second: 5, max_orders_per_minute: 100}
strategies:
  momentum: {max_gross_exposure: 200000, capital: 100000, daily_loss_limit: 5000}
assets: {BTC: {max_gross_exposure: 400000}}
sectors: {majors: {max_net_exposure: 600000}}
drawdown: {reduce_at: 0.05, size_multiplier: 0.5, stop_entries_at: 0.1, flatten_at: 0.2, daily_loss_limit: 20000,
           day_start_hour_utc: 8}
breakers: {volatility_sigma: 8, volatility_window: 200, cooldown_s: 120, stale_after_s: 15}
liquidation: {max_child_notional: 50000, max_volume_fraction: 0.1, interval_s: 5}
var: {confidence: 0.975, horizon_days: 10}
"""

TOML = """
restricted_symbols = ["DOGE/USDT"]
[symbols."BTC/USDT"]
tick_size = "0.01"
max_position = 5
[account]
max_leverage = 3
[drawdown]
reduce_at = 0.05
flatten_at = 0.2
"""


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_load_yaml(tmp_path):
    lim = load_limits(write(tmp_path, "limits.yaml", YAML))
    btc = lim.for_symbol("BTC/USDT")
    assert btc.tick_size == Decimal("0.01") and btc.lot_size == Decimal("0.00001")
    assert btc.collar_bps == 200 and btc.max_order_notional == 100000  # the default fills in
    assert lim.for_symbol("ETH/USDT").collar_bps == 300
    assert lim.restricted_symbols == {"DOGE/USDT"}
    assert lim.for_strategy("momentum").capital == 100000
    assert lim.for_strategy("other").max_orders_per_second == 5
    assert lim.drawdown.day_start_hour_utc == 8 and lim.var.horizon_days == 10
    assert lim.sectors["majors"].max_net_exposure == 600000


def test_load_toml_with_overrides(tmp_path):
    lim = load_limits(write(tmp_path, "limits.toml", TOML),
                      {"account": {"max_open_orders": 7}, "symbols": {"BTC/USDT": {"max_position": "2.5"}}})
    assert lim.account.max_leverage == 3 and lim.account.max_open_orders == 7
    assert lim.for_symbol("BTC/USDT").max_position == Decimal("2.5")
    assert lim.for_symbol("BTC/USDT").tick_size == Decimal("0.01")


def test_round_trip_and_overrides():
    lim = RiskLimits.from_dict({"symbols": {"X/Y": {"max_position": 3}}, "account": {"max_leverage": 2}})
    assert RiskLimits.from_dict(lim.to_dict()) == lim
    assert lim.with_overrides({"account": {"max_leverage": 4}}).account.max_leverage == 4
    assert lim.account.max_leverage == 2  # immutable


@pytest.mark.parametrize("data, key", [
    ({"acount": {}}, "acount"),
    ({"account": {"max_levrage": 2}}, "account.max_levrage"),
    ({"symbols": {"BTC/USDT": {"max_positon": 1}}}, "symbols.BTC/USDT.max_positon"),
    ({"account": {"max_leverage": -1}}, "account.max_leverage"),
    ({"symbols": {"BTC/USDT": {"max_position": -0.5}}}, "symbols.BTC/USDT.max_position"),
    ({"account": {"max_open_orders": "many"}}, "account.max_open_orders"),
    ({"account": {"max_open_orders": 1.5}}, "account.max_open_orders"),
    ({"account": {"max_gross_exposure": True}}, "account.max_gross_exposure"),
    ({"account": "lots"}, "account"),
    ({"symbols": {"BTC/USDT": {"tick_size": 0}}}, "symbols.BTC/USDT.tick_size"),
    ({"drawdown": {"reduce_at": 1.5}}, "drawdown.reduce_at"),
    ({"drawdown": {"reduce_at": 0.2, "stop_entries_at": 0.1}}, "drawdown.stop_entries_at"),
    ({"drawdown": {"daily_loss_action": "panic"}}, "drawdown.daily_loss_action"),
    ({"drawdown": {"day_start_hour_utc": 24}}, "drawdown.day_start_hour_utc"),
    ({"var": {"confidence": 1}}, "var.confidence"),
    ({"breakers": {"stale_after_s": None}}, "breakers.stale_after_s"),
    ({"restricted_symbols": "BTC/USDT"}, "restricted_symbols"),
    ({"sector_map": {"BTC/USDT": 3}}, "sector_map.BTC/USDT"),
    ({"sector_map": {"ETH/USDT": "majors"}, "sectors": {"majors": {"max_net_exposure": 1}},
      "symbols": {"BTC/USDT": {"max_position": 1}}}, "sector_map.BTC/USDT"),
    ({"sector_map": {"ETH/USDT": "majors"}, "sectors": {"alts": {"max_net_exposure": 1}}}, "sectors.alts"),
])
def test_invalid_limits_name_the_key(data, key):
    with pytest.raises(RiskConfigError) as exc:
        RiskLimits.from_dict(data)
    assert str(exc.value).startswith(f"{key}:")


def test_negative_limit_message_says_negative():
    with pytest.raises(RiskConfigError, match="negative"):
        RiskLimits.from_dict({"account": {"max_net_exposure": -5}})


def test_file_errors(tmp_path):
    with pytest.raises(RiskConfigError, match="unsupported"):
        load_limits(write(tmp_path, "limits.json", "{}"))
    with pytest.raises(RiskConfigError, match="cannot parse"):
        load_limits(write(tmp_path, "bad.yaml", "account: [unclosed"))
    with pytest.raises(RiskConfigError, match="top level"):
        load_limits(write(tmp_path, "list.yaml", "- 1\n- 2\n"))
    with pytest.raises(RiskConfigError, match="account.max_leverage"):
        load_limits(write(tmp_path, "limits.toml", TOML), {"account": {"max_leverage": -3}})
    assert load_limits(write(tmp_path, "empty.yaml", "")) == RiskLimits()


def test_direct_construction_is_validated_too():
    from trading.risk import AccountLimits
    with pytest.raises(RiskConfigError, match="account.max_leverage"):
        RiskLimits(account=AccountLimits(max_leverage=-1.0))


def test_runtime_limit_change_takes_effect_without_restart(harness):
    h = harness({"symbols": {"BTC/USDT": {"max_order_quantity": 5}}})
    assert not h.check(qty="6").approved
    h.engine.update_limits(h.engine.limits.with_overrides({"symbols": {"BTC/USDT": {"max_order_quantity": 10}}}))
    assert h.check(qty="6").approved
    assert h.engine.limits.for_symbol("BTC/USDT").max_order_quantity == 10


def test_invalid_runtime_update_keeps_old_limits(harness):
    h = harness({"symbols": {"BTC/USDT": {"max_order_quantity": 5}}})
    old = h.engine.limits
    with pytest.raises(RiskConfigError):
        h.engine.update_limits(old.with_overrides({"symbols": {"BTC/USDT": {"max_order_quantity": -1}}}))
    with pytest.raises(RiskInputError):
        h.engine.update_limits({"symbols": {}})
    assert h.engine.limits is old
    assert h.check(qty="6").reason == "max_order_quantity"


def test_sector_map_change_at_runtime_regroups_exposure(harness):
    h = harness({"sector_map": {"BTC/USDT": "a", "ETH/USDT": "b", "SOL/USDT": "b"},
                 "sectors": {"a": {"max_gross_exposure": 1000}, "b": {"max_gross_exposure": 1000}}},
                prices={"BTC/USDT": "100", "ETH/USDT": "100"})
    h.buy_position("8", "100", symbol="BTC/USDT")
    assert h.check(qty="5", symbol="ETH/USDT").approved  # sector b is empty
    h.engine.update_limits(h.engine.limits.with_overrides({"sector_map": {"ETH/USDT": "a"}}))
    d = h.check(qty="1", symbol="ETH/USDT", price="100.01")
    assert d.reason == "max_gross_exposure" and "sector a" in d.detail

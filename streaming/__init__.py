"""The real-time half: a faust-streaming app for ticks, signals, risk and order flow."""

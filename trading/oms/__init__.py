"""The order management system: every order, paper or live, goes through one OrderManager."""

"""Creating a Checkout Session: the body's validation, the server's prices, and the
session's parameters."""

"""How the shop reaches Stripe: the HTTP client, and the guard (bulkhead, breaker and
budgets) every request-driven call goes through."""

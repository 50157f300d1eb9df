"""The customer's life after the checkout: the app's users mapped to Stripe Customers,
their subscriptions, and the billing portal."""

"""The WSGI edge: routes requests, converts HTTP to calls and errors to JSON.

:mod:`.middleware` holds ``CheckoutMiddleware``, :mod:`.http` the plumbing of bodies,
origins and responses, :mod:`.paste` the PasteDeploy filter. Nothing below this package
imports it.
"""

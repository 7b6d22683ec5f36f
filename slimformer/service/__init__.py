"""The HTTP service: FastAPI app, routes, auth, request checks, and the mapping of errors to HTTP.

The database (tables, sessions, schema, repositories) is `slimformer.store`; the settings and the
job spec are `slimformer.contracts`. Importing this package stays light (no torch, no FastAPI app
built); use `slimformer.service.app.create_app(settings)` for the app.
"""

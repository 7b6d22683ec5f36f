"""The HTTP service: FastAPI app, routes, auth, database models, sessions, migrations check, settings.

Importing this package stays light (no torch, no FastAPI app built); use
`slimformer.service.app.create_app(settings)` for the app and `slimformer.service.jobs_repo` for
the job state changes a worker makes.
"""

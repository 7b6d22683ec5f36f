"""The service's house: database tables, engines and sessions, the schema check, and one repository per resource.

Everything that reads or writes the service database goes through here; the API (`slimformer.service`)
and the workers (`slimformer.workers`) both use it, and it imports neither of them. Repositories
take an open session and leave committing to the caller (`db.session_scope`), so one unit of work
can span several of them.
"""

"""What the service and the workers share without importing each other: the job spec and the settings.

Torch-free and FastAPI-free, so either side (and the store) can import it cheaply.
"""

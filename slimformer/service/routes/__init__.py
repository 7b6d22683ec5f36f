"""API routes, one module per resource, each an `APIRouter` under /v1."""

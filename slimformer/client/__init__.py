"""The slimformer HTTP client library: drive a slimformer server from Python.

    from slimformer.client import SlimformerClient, resolve_connection

    with SlimformerClient(*resolve_connection()) as client:
        job = client.submit_job({"teacher": "minilm-l6", "dataset": "rotten-tomatoes"})
        ...
        front = client.candidates(job.id, pareto=True).items
        client.download(job.id, front[0].id, "onnx", "model/")

Torch-free and service-free (httpx only), so it installs and imports fast wherever a job is
submitted from. The `slimformer submit | jobs | status | ...` commands live in slimformer.cli.remote.
"""

from slimformer.client.api import SlimformerClient
from slimformer.client.connection import DEFAULT_URL, credentials_path, resolve_connection
from slimformer.client.errors import ClientError
from slimformer.client.models import FINAL_STATUSES, Candidate, Dataset, Job, JobEvent, Page, Teacher

__all__ = [
    "DEFAULT_URL",
    "FINAL_STATUSES",
    "Candidate",
    "ClientError",
    "Dataset",
    "Job",
    "JobEvent",
    "Page",
    "SlimformerClient",
    "Teacher",
    "credentials_path",
    "resolve_connection",
]

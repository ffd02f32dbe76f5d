"""Client and command line for the Orchestrator Service: `orchestrator --help`, or import the client."""

from orchestrator_client.client import (
    DatasetUpload,
    EventsUnavailable,
    OrchestratorClient,
    Prediction,
    ServerEvent,
)
from orchestrator_client.errors import (
    ApiError,
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    RateLimited,
    ServiceUnavailable,
    ServiceUnreachable,
    Unauthorized,
)

__all__ = [
    "ApiError",
    "Conflict",
    "DatasetUpload",
    "EventsUnavailable",
    "Forbidden",
    "InvalidRequest",
    "NotFound",
    "OrchestratorClient",
    "Prediction",
    "RateLimited",
    "ServerEvent",
    "ServiceUnavailable",
    "ServiceUnreachable",
    "Unauthorized",
]

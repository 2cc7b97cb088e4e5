"""Typed dependencies shared by the routes.

All of them are ``async``: they only read app state and headers, and FastAPI would run a
plain ``def`` dependency in the thread pool, one thread hop each (milliseconds per request).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from index.settings import Settings
from service.guards import (
    InFlightLimit,
    admin_keys,
    check_caller,
    require_bearer,
    retrieval_keys,
)
from service.observability import Metrics
from service.state import ServiceState


async def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


async def get_retrieval_slots(request: Request) -> InFlightLimit:
    slots: InFlightLimit = request.app.state.retrieval_slots
    return slots


StateDep = Annotated[ServiceState, Depends(get_state)]
RetrievalSlotsDep = Annotated[InFlightLimit, Depends(get_retrieval_slots)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]


async def guard_public(
    request: Request,
    settings: SettingsDep,
    x_site_key: Annotated[str | None, Header(max_length=128)] = None,
) -> None:
    """Origin allow-list and rate limits for endpoints the public widget calls."""
    site_key = x_site_key if x_site_key in settings.site_keys else None
    check_caller(request, settings, request.app.state.rate_limiter, site_key=site_key)


async def guard_admin(
    settings: SettingsDep, authorization: Annotated[str | None, Header()] = None
) -> None:
    require_bearer(authorization, admin_keys(settings), what="the admin API")


async def guard_retrieval(
    settings: SettingsDep, authorization: Annotated[str | None, Header()] = None
) -> None:
    require_bearer(authorization, retrieval_keys(settings), what="the retrieval API")


PublicGuard = Depends(guard_public)
AdminGuard = Depends(guard_admin)
RetrievalGuard = Depends(guard_retrieval)

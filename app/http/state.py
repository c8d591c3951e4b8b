"""What the handlers find in the app's `State`: the services the factory built, and the origin policy."""

from __future__ import annotations

from litestar.datastructures import State

from app.http.origins import OriginPolicy
from app.stream.services import Services


def services_of(state: State) -> Services:
    services: Services = state.services
    return services


def origins_of(state: State) -> OriginPolicy:
    origins: OriginPolicy = state.origins
    return origins

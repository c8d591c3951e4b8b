"""What the handlers find in the app's `State`: the services the factory built."""

from __future__ import annotations

from litestar.datastructures import State

from app.stream.services import Services


def services_of(state: State) -> Services:
    services: Services = state.services
    return services

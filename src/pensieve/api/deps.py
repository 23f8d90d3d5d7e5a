"""Typed FastAPI dependencies: the services that the lifespan put on `app.state`, and API-key checks."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Request

from pensieve.burst.controller import BurstController
from pensieve.config import Settings
from pensieve.engine.pool import ModelPool
from pensieve.errors import AuthenticationError
from pensieve.inference import InferenceService


def get_settings(request: Request) -> Settings:
    """The running server's settings."""
    settings: Settings = request.app.state.settings
    return settings


def get_pool(request: Request) -> ModelPool:
    """The model pool."""
    pool: ModelPool = request.app.state.pool
    return pool


def get_inference(request: Request) -> InferenceService:
    """The inference service."""
    service: InferenceService = request.app.state.inference
    return service


def get_controller(request: Request) -> BurstController:
    """The burst controller."""
    controller: BurstController = request.app.state.controller
    return controller


SettingsDep = Annotated[Settings, Depends(get_settings)]
PoolDep = Annotated[ModelPool, Depends(get_pool)]
InferenceDep = Annotated[InferenceService, Depends(get_inference)]
ControllerDep = Annotated[BurstController, Depends(get_controller)]


def require_api_key(request: Request, settings: SettingsDep) -> None:
    """When PENSIEVE_API_KEY is set, demand it as a Bearer token (constant-time comparison)."""
    if settings.api_key is None:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    expected = settings.api_key.get_secret_value()
    if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip().encode(), expected.encode()):
        raise AuthenticationError(
            "Incorrect or missing API key. Send it as 'Authorization: Bearer <key>' (the server's PENSIEVE_API_KEY)."
        )

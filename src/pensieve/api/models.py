"""Model listing routes: OpenAI's GET /v1/models[/{id}] and Pensieve's detailed GET /api/models."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Depends

from pensieve.api.access import inference_caller
from pensieve.api.deps import CloudDep, PoolDep, SettingsDep
from pensieve.burst.planner import AUTO_MODEL
from pensieve.cloud.registry import CloudRegistry
from pensieve.engine.pool import ModelPool
from pensieve.engine.registry import ModelInfo, normalise_model_id
from pensieve.errors import ModelNotFoundError
from pensieve.schemas.responses import ModelCard, ModelList

router = APIRouter(tags=["Models"], dependencies=[Depends(inference_caller)])


def describe_model(info: ModelInfo, pool: ModelPool) -> dict[str, Any]:
    """Everything a client may want to know about an installed model file."""
    loaded = {engine.model_id: engine for engine in pool.loaded()}
    engine = loaded.get(info.id)
    return {
        "id": info.id,
        "file": info.path.name,
        "size_bytes": info.size_bytes,
        "architecture": info.architecture,
        "name": info.name,
        "quantization": info.quantization,
        "parameters": info.parameter_count,
        "context_length": info.context_length,
        "chat_template": info.has_chat_template,
        "chat_format": engine.chat_format if engine else None,
        "loaded": engine is not None,
        "loaded_context_length": engine.context_length if engine else None,
        "stats": asdict(engine.stats()) if engine else None,
        "aliases": list(info.settings.aliases),
        "settings": info.settings.overrides(),  # from models/<id>.toml, over the global settings
        "usable": info.usable and pool.failure(info.id) is None,
        "error": info.error or pool.failure(info.id),
    }


def _card(info: ModelInfo, pool: ModelPool, alias: str | None = None) -> ModelCard:
    details = describe_model(info, pool)
    if alias is not None:
        details["alias_of"] = info.id
    return ModelCard(id=alias or info.id, created=info.modified_ns // 1_000_000_000, details=details)


def _with_aliases(info: ModelInfo, pool: ModelPool) -> list[ModelCard]:
    """The model's card, then one per alias that resolves to it (`details.alias_of` names the model)."""
    aliases = [alias for alias in info.settings.aliases if pool.canonical(alias) == info.id]
    return [_card(info, pool), *(_card(info, pool, alias) for alias in aliases)]


def _routing_cards(cloud: CloudRegistry, default_model: str) -> list[ModelCard]:
    """`auto` (the route planner decides) and every cloud model as `<provider>/<model>`."""
    cards = [
        ModelCard(
            id=AUTO_MODEL,
            created=0,
            owned_by="pensieve",
            details={"route": "auto", "local": default_model, "cloud": cloud.default_model_id},
        )
    ]
    for model_id in cloud.model_ids():
        model = cloud.model(model_id)
        details = {
            "route": "cloud",
            "provider": cloud.provider_of(model_id).name,
            "price_input_per_million": model.price_input,
            "price_output_per_million": model.price_output,
            "context_length": model.context_length,
        }
        cards.append(ModelCard(id=model_id, created=0, owned_by=cloud.provider_of(model_id).name, details=details))
    return cards


@router.get("/v1/models", response_model=ModelList)
async def list_models(pool: PoolDep, cloud: CloudDep, settings: SettingsDep) -> ModelList:
    """Installed local models that can serve, then `auto` and the cloud models (`<provider>/<model>`), then
    the model files that cannot serve, last, with `details.usable` false and `details.error` saying why
    (so a broken download shows up with its reason instead of silently missing)."""
    cards = [card for info in await pool.available_models() for card in _with_aliases(info, pool)]
    usable = [card for card in cards if card.details["usable"]]
    unusable = [card for card in cards if not card.details["usable"]]
    return ModelList(data=usable + _routing_cards(cloud, settings.engine.default_model) + unusable)


@router.get("/v1/models/{model_id:path}", response_model=ModelCard)
async def retrieve_model(model_id: str, pool: PoolDep, cloud: CloudDep, settings: SettingsDep) -> ModelCard:
    """One model: installed (usable or not: see `details`), `auto` or a cloud model."""
    for card in _routing_cards(cloud, settings.engine.default_model):
        if card.id == model_id or card.id == cloud.resolve(model_id):
            return card
    models = await pool.available_models()
    wanted = pool.canonical(model_id)
    for info in models:
        if info.id == wanted:
            return _card(info, pool, None if wanted == normalise_model_id(model_id) else model_id.strip())
    raise ModelNotFoundError(f"The model '{model_id}' does not exist.", param="model")


@router.get("/api/models")
async def list_model_files(pool: PoolDep) -> dict[str, Any]:
    """Every model file in the models folder, with its metadata, load state and any error."""
    models = await pool.available_models()
    return {"models_dir": str(pool.models_dir), "data": [describe_model(info, pool) for info in models]}

"""Request bodies the routes parse themselves (to report every problem), documented anyway."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

_MODELS: dict[str, type[BaseModel]] = {}
REF = "#/components/schemas/{model}"


def json_body(
    model: type[BaseModel], other: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """``openapi_extra`` for a JSON body of ``model``'s shape (its schema joins the components).

    ``other`` adds more media types (``multipart/form-data`` → its schema) to the same body.
    """
    _MODELS[model.__name__] = model
    content = {"application/json": {"schema": {"$ref": REF.format(model=model.__name__)}}}
    content.update({media: {"schema": schema} for media, schema in (other or {}).items()})
    return {"requestBody": {"required": True, "content": content}}


def install(app: FastAPI) -> None:
    """Add the registered models' schemas to the generated OpenAPI document."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            description=app.description,
            routes=app.routes,
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for name, model in _MODELS.items():
            definition = model.model_json_schema(by_alias=True, ref_template=REF)
            for sub, sub_schema in definition.pop("$defs", {}).items():
                components.setdefault(sub, sub_schema)
            components.setdefault(name, definition)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]

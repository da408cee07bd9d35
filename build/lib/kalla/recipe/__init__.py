"""Recipe and job models (the seed contracts) and their validation."""

from kalla.recipe.models import (
    Cardinality,
    CompletionCallback,
    ErrorCallback,
    FilterCondition,
    FilterOp,
    Job,
    JobRequest,
    MatchingProgress,
    MatchPass,
    MatchSpec,
    OutputPaths,
    Recipe,
    RecipeSource,
    RecipeSources,
    ResolvedSource,
    StagingProgress,
)
from kalla.recipe.parse import load_recipe, parse_job_request, parse_model, parse_recipe

__all__ = [
    "Cardinality",
    "CompletionCallback",
    "ErrorCallback",
    "FilterCondition",
    "FilterOp",
    "Job",
    "JobRequest",
    "MatchPass",
    "MatchSpec",
    "MatchingProgress",
    "OutputPaths",
    "Recipe",
    "RecipeSource",
    "RecipeSources",
    "ResolvedSource",
    "StagingProgress",
    "load_recipe",
    "parse_job_request",
    "parse_model",
    "parse_recipe",
]

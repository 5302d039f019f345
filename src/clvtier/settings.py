"""The base of every typed settings class: unknown keys are errors, values are frozen."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Settings(BaseModel):
    """Strict, immutable settings (pydantic): a misspelt key is an error naming its path."""

    model_config = ConfigDict(extra="forbid", frozen=True)


__all__ = ["Settings"]

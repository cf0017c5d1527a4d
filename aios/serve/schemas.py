"""The request bodies, as pydantic models: OpenAI's fields, then aios's extras.

Unknown fields are ignored, as OpenAI-compatible servers do (clients send fields a server may
not know, e.g. `frequency_penalty`); a known field with a bad value is refused with 422 and its
name. aios's extras ride in the same body (the `openai` client sends them with `extra_body`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "ChatMessage",
    "ChatRequest",
    "CompletionRequest",
    "EmbeddingRequest",
    "ImageRequest",
    "MemoryAddRequest",
    "MemorySearchRequest",
    "SpeechRequest",
]

#: How many choices (`n`) or images one request may ask for.
MAX_CHOICES = 16


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class StreamOptions(_Body):
    include_usage: bool = False  # a last chunk with the token counts, as OpenAI sends


class _Sampling(_Body):
    """The fields text requests share."""

    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1, le=MAX_CHOICES)
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    # aios extras
    steps: int | None = Field(None, ge=1, le=1000)
    sampler: str | None = None
    suffix: str | None = None
    memory: bool | None = None
    stream_format: Literal["openai", "steps"] = "openai"

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> list[str] | None:
        if value is None:
            return None
        stops = [value] if isinstance(value, str) else value
        if len(stops) > 4 or any(not s for s in stops):
            raise ValueError("stop takes up to 4 non-empty strings")
        return stops


class CompletionRequest(_Sampling):
    prompt: str | list[str]

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and len(value) != 1:
            raise ValueError("give one prompt per request (use n for several completions)")
        return value


class ChatMessage(_Body):
    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[dict[str, object]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):  # content parts: only text parts carry text
            return "".join(str(p.get("text", "")) for p in self.content
                           if p.get("type") == "text")
        return self.content or ""


class ChatRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)


class ImageRequest(_Body):
    prompt: str = Field(min_length=1)
    model: str | None = None
    n: int = Field(1, ge=1, le=MAX_CHOICES)
    response_format: Literal["b64_json", "url"] = "b64_json"
    size: str | None = None
    seed: int | None = None
    steps: int | None = Field(None, ge=1, le=1000)
    sampler: str | None = None


class SpeechRequest(_Body):
    input: str = Field(min_length=1)
    model: str | None = None
    voice: str | None = None
    response_format: Literal["wav"] = "wav"
    seed: int | None = None
    steps: int | None = Field(None, ge=1, le=1000)
    sampler: str | None = None


class EmbeddingRequest(_Body):
    input: str | list[str]
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"

    @field_validator("input")
    @classmethod
    def _texts(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and not value:
            raise ValueError("input must hold at least one text")
        return value


class MemoryAddRequest(_Body):
    texts: list[str] = Field(min_length=1, max_length=1000)
    source: str = "aios serve"


class MemorySearchRequest(_Body):
    query: str = Field(min_length=1)
    k: int = Field(5, ge=1, le=100)

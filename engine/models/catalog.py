"""The model catalog (``assets/catalog.toml``): which Hub id plays which role, per profile."""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

CATALOG_PATH = Path(__file__).resolve().parents[2] / "assets" / "catalog.toml"
PROFILES = ("cpu", "t4", "gpu", "zerogpu", "tiny")
LLM_ROLES = ("base_llm", "instruct_llm", "quant_subject")
IMAGE_ROLES = ("sdxl_turbo", "sdxl_base", "flux_schnell", "flux_dev")
ROLES = LLM_ROLES + IMAGE_ROLES
PRECISIONS = ("fp32", "fp16", "bf16", "int8", "nf4", "nf4-dq", "fp4")
IMAGE_DEFAULTS = ("sdxl_turbo", "flux_schnell")  # image models ticked by default, unless a profile says otherwise


@dataclass(frozen=True)
class ModelSpec:
    """One model to load: what it is, where it comes from and at which precision."""

    role: str
    kind: str  # causal_lm | sdxl | flux
    id: str
    precision: str = "fp32"
    params_b: float | None = None
    vae: str | None = None
    transformer_precision: str | None = None
    offload: bool = False
    gated: bool = False
    endpoint: str | None = None  # OpenAI-compatible server (…/v1) instead of a local model
    endpoint_model: str | None = None  # the model's name on that server (default: id)
    fast_path_buckets: tuple[int, ...] | None = None  # static-cache lengths of the fast path (default: engine.models.fastpath.BUCKETS)

    @property
    def is_tiny(self) -> bool:
        return self.id.startswith("tiny/")

    @property
    def key(self) -> str:
        """Cache key of the loaded object: the same id at another precision is another model."""
        return f"{self.kind}:{self.id}@{self.precision}" + (f"+{self.transformer_precision}" if self.transformer_precision else "")

    def with_precision(self, precision: str) -> "ModelSpec":
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}")
        return replace(self, precision=precision)

    def with_id(self, model_id: str) -> "ModelSpec":
        """Another model for the same role (a custom Hub id is loaded locally, not from the endpoint)."""
        return replace(self, id=model_id.strip(), params_b=None if not model_id.startswith("tiny/") else self.params_b,
                       endpoint=None, endpoint_model=None)

    @property
    def served_name(self) -> str:
        return self.endpoint_model or self.id


@dataclass
class Catalog:
    profile: str
    description: str
    specs: dict[str, ModelSpec]
    choices: dict[str, list[str]] = field(default_factory=dict)
    stand_in: bool = False
    noise: bool = False
    resident: tuple[str, ...] = ()  # roles loaded at start-up on ZeroGPU (the others load on demand)
    image_defaults: tuple[str, ...] = IMAGE_DEFAULTS  # image roles ticked by default (those that fit together)

    def spec(self, role: str) -> ModelSpec:
        return self.specs[role]

    def llm_choices(self, role: str) -> list[str]:
        """Ids offered in a picker for an LLM role: the profile's own first, then the extras."""
        own = [self.specs[r].id for r in (role,)]
        if self.profile == "tiny":
            others = [self.specs[r].id for r in ("base_llm", "instruct_llm")]
            return list(dict.fromkeys(own + others))
        return list(dict.fromkeys(own + self.choices.get(role, [])))


@lru_cache(maxsize=1)
def _raw() -> dict:
    with open(CATALOG_PATH, "rb") as fh:
        return tomllib.load(fh)


def parse_override(value: str) -> tuple[str, str | None]:
    """``"org/name@nf4"`` → (``"org/name"``, ``"nf4"``); the precision is optional."""
    value = value.strip()
    if "@" in value:
        model_id, precision = value.rsplit("@", 1)
        precision = precision.strip().lower()
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r} in {value!r} (use one of {', '.join(PRECISIONS)})")
        return model_id.strip(), precision
    return value, None


def load_catalog(profile: str, env: dict[str, str] | None = None) -> Catalog:
    """The catalog of one profile, with ``GENAI_<ROLE>`` environment overrides applied."""
    env = dict(os.environ if env is None else env)
    raw = _raw()
    if profile not in raw["profiles"]:
        raise ValueError(f"unknown profile {profile!r} (use one of {', '.join(PROFILES)})")
    prof = raw["profiles"][profile]
    specs: dict[str, ModelSpec] = {}
    for role, meta in raw["roles"].items():
        entry = dict(prof[role])
        spec = ModelSpec(role=role, kind=meta["kind"], **entry)
        override = env.get(f"GENAI_{role.upper()}")
        if override:
            model_id, precision = parse_override(override)
            spec = spec.with_id(model_id)
            if precision:
                spec = spec.with_precision(precision)
        endpoint = env.get(f"GENAI_{role.upper()}_ENDPOINT")
        if endpoint and spec.kind == "causal_lm":
            spec = replace(spec, endpoint=endpoint.strip().rstrip("/"),
                           endpoint_model=(env.get(f"GENAI_{role.upper()}_ENDPOINT_MODEL") or "").strip() or None)
        if spec.kind == "causal_lm" and prof.get("fast_path_buckets"):
            spec = replace(spec, fast_path_buckets=tuple(int(b) for b in prof["fast_path_buckets"]))
        specs[role] = spec
    return Catalog(
        profile=profile,
        description=prof.get("description", ""),
        specs=specs,
        choices={k: list(v) for k, v in raw.get("choices", {}).items()},
        stand_in=bool(prof.get("stand_in", False)),
        noise=bool(prof.get("noise", False)),
        resident=_resident_roles(profile, prof.get("resident", [])),
        image_defaults=_image_defaults(profile, prof),
    )


def _resident_roles(profile: str, roles: list[str]) -> tuple[str, ...]:
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"profile {profile!r}: unknown resident roles {sorted(unknown)}")
    return tuple(roles)


def _image_defaults(profile: str, prof: dict) -> tuple[str, ...]:
    roles = tuple(prof.get("image_defaults", IMAGE_DEFAULTS))
    unknown = [r for r in roles if r not in IMAGE_ROLES]
    if unknown or not roles:
        raise ValueError(f"profiles.{profile}.image_defaults: {roles!r} (use some of {', '.join(IMAGE_ROLES)})")
    return roles

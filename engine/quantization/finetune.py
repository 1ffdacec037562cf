"""Part 2, fine-tuning: the memory one training step needs (full fine-tuning, LoRA, QLoRA).

Each term is computed from the model's config (its linear layers counted on the meta device) and
written out in ``docs/finetuning_memory.md``:

- weights: every parameter at its precision (k-bit bases: the linear layers quantized, the other
  modules in fp32, as ``peft.prepare_model_for_kbit_training`` leaves them);
- LoRA adapters: ``r × (in + out)`` per targeted linear layer, in fp32 (peft's default);
- gradients: one per trainable parameter, in its dtype;
- optimizer states: AdamW 32-bit keeps two fp32 moments (8 bytes per trainable parameter, plus the
  4-byte fp32 master copy of mixed-precision full fine-tuning: ZeRO's 16 bytes per parameter);
  bitsandbytes' 8-bit AdamW keeps two 1-byte moments and one fp32 absmax per 256 values (tensors
  under 4,096 values stay 32-bit);
- activations: what autograd keeps for the backward pass, per token and layer — Korthikanti et al.
  (2022)'s accounting redone for this architecture (RMSNorm, SwiGLU, grouped-query attention,
  SDPA/flash attention, no dropout), checked against PyTorch's saved tensors on CPU
  (``engine.quantization.finetune_measure``);
- logits and loss: the logits, the log-softmax the loss keeps (fp32) and its gradients during the
  backward pass (fp32, twice).

The peak of one step is weights + adapters + optimizer states + the larger of (gradients) and
(activations + logits and loss): PyTorch frees each layer's activations as its gradients appear,
so the two are never all there at once.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from engine.errors import UserError
from engine.models import arch
from engine.quantization import planner

GB = 1e9
METHODS = ("full", "lora", "qlora")
PRECISIONS = ("fp32", "bf16", "int8", "nf4", "nf4-dq")
METHOD_PRECISIONS = {"full": ("fp32", "bf16"), "lora": ("fp32", "bf16", "int8"), "qlora": ("nf4", "nf4-dq")}
OPTIMIZERS = ("adamw", "adamw-8bit")
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
DEFAULT_TARGETS = ("q_proj", "v_proj")  # peft's default for Llama / Mistral
ADAPTER_BYTES = 4  # peft keeps LoRA weights in fp32 (autocast_adapter_dtype) whatever the base
BNB_BLOCK = 256  # bitsandbytes' 8-bit optimizers: one fp32 absmax per 256 values and state
BNB_MIN_8BIT = 4096  # … for tensors of at least 4,096 values; smaller ones keep 32-bit states
TERMS = ("weights", "adapters", "gradients", "optimizer", "activations", "logits")


# ----------------------------------------------------------------------------- the model's shape
@dataclass(frozen=True)
class Structure:
    """What the formulas read from a causal LM: its sizes and its linear layers."""

    label: str
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    max_context: int
    params: int  # every parameter (a tied lm_head once)
    param_sizes: tuple[int, ...]  # values of each parameter tensor (8-bit optimizers keep small ones 32-bit)
    quantizable: int  # weights of the linear layers a k-bit base quantizes
    linear_rows: int
    linears: tuple[tuple[str, int, int], ...]  # (short name, in, out) of each linear layer but lm_head

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim


@lru_cache(maxsize=32)
def structure(model: str) -> Structure:
    """The model's shape from its config (a preset, a tiny id or any Hub id: ``config.json`` only)."""
    label, config = planner.resolve_config(model)
    try:
        return structure_of(label, config)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - not a causal LM (an image model, an encoder…)
        raise UserError("quant.err_not_causal_lm", model=model, kind=type(config).__name__) from exc


def structure_of(label: str, config) -> Structure:
    """Sizes and linear layers of a causal LM's config, counted on the meta device (nothing allocated)."""
    import torch
    from transformers import AutoModelForCausalLM

    from engine.runtime.build_lock import BUILD_LOCK

    text = arch.text_config(config)
    with BUILD_LOCK, torch.device("meta"):
        meta = AutoModelForCausalLM.from_config(config)
    meta.tie_weights()
    out_emb = meta.get_output_embeddings()
    skip = set(getattr(meta, "_keep_in_fp32_modules", None) or [])
    named = [(name, m) for name, m in meta.named_modules() if isinstance(m, torch.nn.Linear) and m is not out_emb]
    linears = tuple((name.rsplit(".", 1)[-1], m.in_features, m.out_features) for name, m in named)
    quantized = [m for name, m in named if not any(s in name for s in skip)]  # as engine.models.memory.param_counts
    sizes = tuple(p.numel() for p in meta.parameters())
    heads = int(getattr(text, "num_attention_heads", 0) or 0)
    hidden = int(getattr(text, "hidden_size", 0) or 0)
    intermediate = int(getattr(text, "intermediate_size", 0) or 0)
    layers = int(getattr(text, "num_hidden_layers", 0) or 0)
    if not (heads and hidden and intermediate and layers):
        raise UserError("ft.err_architecture", model=label)
    shape = arch.attention(text)
    return Structure(label=label, layers=layers, hidden=hidden, intermediate=intermediate, heads=heads,
                     kv_heads=shape.kv_heads, head_dim=shape.head_dim, vocab=int(text.vocab_size),
                     max_context=int(getattr(text, "max_position_embeddings", 0) or 0), params=sum(sizes),
                     param_sizes=sizes, quantizable=sum(m.weight.numel() for m in quantized),
                     linear_rows=sum(m.weight.shape[0] for m in quantized),
                     linears=linears)


# ----------------------------------------------------------------------------- the settings
@dataclass(frozen=True)
class Setup:
    method: str = "qlora"
    precision: str = "nf4"
    optimizer: str = "adamw"
    batch_size: int = 1
    seq_len: int = 512
    checkpointing: bool = False
    rank: int = 16
    targets: tuple[str, ...] = DEFAULT_TARGETS

    @property
    def lora(self) -> bool:
        return self.method != "full"

    @property
    def tokens(self) -> int:
        return self.batch_size * self.seq_len

    @property
    def act_bytes(self) -> int:
        """Bytes of one activation value: fp32 training keeps fp32, every other setup computes in 16-bit."""
        return 4 if self.precision == "fp32" else 2

    @property
    def weight_bytes(self) -> int:
        return 4 if self.precision == "fp32" else 2


def check(setup: Setup, s: Structure) -> Setup:
    """The setup, or a :class:`UserError` naming what is wrong with it."""
    if setup.method not in METHODS:
        raise UserError("ft.err_method", method=setup.method)
    if setup.precision not in METHOD_PRECISIONS[setup.method]:
        raise UserError(f"ft.err_precision_{setup.method}", precision=setup.precision)
    if setup.optimizer not in OPTIMIZERS:
        raise UserError("ft.err_optimizer", optimizer=setup.optimizer)
    if setup.batch_size < 1 or setup.seq_len < 1:
        raise UserError("ft.err_sizes")
    if s.max_context and setup.seq_len > s.max_context:
        raise UserError("ux.plan.err_context", model=s.label, context=setup.seq_len, max_context=s.max_context)
    if setup.lora:
        if setup.rank < 1:
            raise UserError("ft.err_rank")
        unknown = [t for t in setup.targets if t not in TARGETS]
        if unknown:
            raise UserError("ft.err_targets_unknown", targets=", ".join(unknown), choices=", ".join(TARGETS))
        if not setup.targets:
            raise UserError("ft.err_no_targets")
        found = {name for name, _, _ in s.linears}
        if not found & set(setup.targets):
            raise UserError("ft.err_targets_missing", model=s.label, targets=", ".join(setup.targets),
                            found=", ".join(sorted(found)[:12]))
    return setup


# ----------------------------------------------------------------------------- the terms
def adapter_params(s: Structure, setup: Setup) -> int:
    """``r × (in + out)`` for every targeted linear layer (A is r × in, B is out × r)."""
    if not setup.lora:
        return 0
    return sum(setup.rank * (i + o) for name, i, o in s.linears if name in setup.targets)


def adapter_sizes(s: Structure, setup: Setup) -> list[int]:
    return [n for name, i, o in s.linears if name in setup.targets for n in (setup.rank * i, setup.rank * o)]


def weights_bytes(s: Structure, setup: Setup) -> int:
    """The model's own weights (adapters apart). k-bit: quantized linear layers + the rest in fp32."""
    if setup.precision in ("fp32", "bf16"):
        return s.params * setup.weight_bytes
    counts = planner.memory.ParamCounts(quantizable=s.quantizable, other=s.params - s.quantizable,
                                        linear_rows=s.linear_rows)
    return planner.weights_bytes(counts, setup.precision, compute_bytes=4)


def optimizer_bytes_per_tensor(n: int, optimizer: str) -> float:
    if optimizer == "adamw-8bit" and n >= BNB_MIN_8BIT:
        blocks = -(-n // BNB_BLOCK)
        return 2 * n + 2 * 4 * blocks  # two uint8 moments + an fp32 absmax per block of each
    return 8 * n  # two fp32 moments


def optimizer_bytes(s: Structure, setup: Setup) -> int:
    sizes = adapter_sizes(s, setup) if setup.lora else list(s.param_sizes)
    states = sum(optimizer_bytes_per_tensor(n, setup.optimizer) for n in sizes)
    if not setup.lora and setup.precision == "bf16":
        states += 4 * s.params  # mixed precision: the optimizer updates an fp32 master copy
    return int(states)


def gradients_bytes(s: Structure, setup: Setup) -> int:
    if setup.lora:
        return adapter_params(s, setup) * ADAPTER_BYTES
    return s.params * setup.weight_bytes


def _lora_inputs(s: Structure, setup: Setup) -> int:
    """Bytes per token of the inputs the adapters keep (their A matrix needs them for its gradient).
    With an fp32 base the adapters read the base's own tensors (shared ones counted once); with a
    16-bit base each adapter keeps its own fp32 copy of its input."""
    b, targets = setup.act_bytes, set(setup.targets)
    if b == ADAPTER_BYTES:
        shared = 4 * s.hidden if targets & {"q_proj", "k_proj", "v_proj"} else 0
        shared += 4 * s.hidden if targets & {"gate_proj", "up_proj"} else 0
        shared += 4 * s.intermediate if "down_proj" in targets else 0
        return shared  # o_proj reads the attention output, already kept by attention
    width = {"q_proj": s.hidden, "k_proj": s.hidden, "v_proj": s.hidden, "o_proj": s.q_dim,
             "gate_proj": s.hidden, "up_proj": s.hidden, "down_proj": s.intermediate}
    return sum(4 * width[t] for t in targets)


def layer_bytes_per_token(s: Structure, setup: Setup) -> int:
    """Activations one decoder layer keeps per token for the backward pass (bytes).

    Full fine-tuning: 2 RMSNorms × (fp32 input 4h + fp32 1/rms 4 + normalised input b·h for the
    norm's weight gradient + the next linear's input b·h) + attention's q, k, v and output
    b·(2·q_dim + 2·kv_dim) + SDPA's fp32 log-sum-exp 4·heads + SwiGLU's gate, SiLU, up and product
    4·b·I. LoRA (frozen base): no weight-gradient inputs, the product only if down_proj is adapted,
    plus what the adapters keep: their inputs and their r-wide A outputs (fp32)."""
    h, b = s.hidden, setup.act_bytes
    norms = 2 * (4 * h + 4)
    attention = b * (2 * s.q_dim + 2 * s.kv_dim) + 4 * s.heads
    if not setup.lora:
        return norms + 2 * 2 * b * h + attention + 4 * b * s.intermediate
    n_targets = len({name for name, _, _ in s.linears if name in setup.targets})
    return norms + attention + 3 * b * s.intermediate + _lora_inputs(s, setup) + 4 * setup.rank * n_targets


def activations_bytes(s: Structure, setup: Setup) -> int:
    """Every layer's activations; with gradient checkpointing, each layer's input only, plus one
    layer recomputed during the backward pass."""
    per_layer = layer_bytes_per_token(s, setup)
    if setup.checkpointing:
        per_token = s.layers * setup.act_bytes * s.hidden
    else:
        per_token = s.layers * per_layer
        if setup.lora:
            per_token -= 4 * s.hidden + 4  # the first norm's input needs no gradient (frozen embeddings)
    final_norm = 4 * s.hidden + 4 + (0 if setup.lora else 2 * setup.act_bytes * s.hidden)
    return int((per_token + final_norm) * setup.tokens) + recompute_bytes(s, setup)


def logits_bytes(s: Structure, setup: Setup) -> int:
    """The logits (model dtype), the fp32 log-softmax the loss keeps, and its two fp32 gradients."""
    return int(setup.tokens * s.vocab * (setup.act_bytes + 4 + 8))


# ----------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class FinetunePlan:
    model: str
    label: str
    setup: Setup
    params: int
    trainable: int
    terms: dict  # term → bytes
    peak: int
    fits: dict = field(default_factory=dict)  # device key → bool
    layer_per_token: int = 0
    max_context: int = 0
    recompute: int = 0  # bytes of the recomputed layer (gradient checkpointing), part of "activations"

    @property
    def peak_gb(self) -> float:
        return self.peak / GB

    def gb(self, term: str) -> float:
        return self.terms[term] / GB


def recompute_bytes(s: Structure, setup: Setup) -> int:
    """With gradient checkpointing: the one layer whose activations are recomputed during the backward pass."""
    return layer_bytes_per_token(s, setup) * setup.tokens if setup.checkpointing else 0


def peak_bytes(terms: dict, recompute: int = 0, logits_out: int = 0) -> int:
    """Weights + adapters + optimizer states + the larger of (gradients) and (activations + logits
    and loss). With checkpointing the recomputed layer comes after the loss' gradients are freed:
    saved inputs + the larger of (logits and loss) and (recomputed layer + logits + gradients)."""
    steady = terms["weights"] + terms["adapters"] + terms["optimizer"]
    if not recompute:
        return int(steady + max(terms["gradients"], terms["activations"] + terms["logits"]))
    saved = terms["activations"] - recompute
    return int(steady + saved + max(terms["logits"], recompute + logits_out + terms["gradients"]))


def plan_for(s: Structure, setup: Setup, model: str = "") -> FinetunePlan:
    check(setup, s)
    recompute = recompute_bytes(s, setup)
    terms = {
        "weights": weights_bytes(s, setup),
        "adapters": adapter_params(s, setup) * ADAPTER_BYTES,
        "gradients": gradients_bytes(s, setup),
        "optimizer": optimizer_bytes(s, setup),
        "activations": activations_bytes(s, setup),
        "logits": logits_bytes(s, setup),
    }
    peak = peak_bytes(terms, recompute, setup.tokens * s.vocab * setup.act_bytes)
    fits = {dev.key: peak <= dev.usable_bytes for dev in planner.DEVICES}
    trainable = adapter_params(s, setup) if setup.lora else s.params
    return FinetunePlan(model=model or s.label, label=s.label, setup=setup, params=s.params, trainable=trainable,
                        terms=terms, peak=peak, fits=fits, layer_per_token=layer_bytes_per_token(s, setup),
                        max_context=s.max_context, recompute=recompute)


def plan(model: str = "mistral-7b", **settings) -> FinetunePlan:
    """The fine-tuning memory of ``model`` (a preset, a tiny id or any Hub id: its config only)."""
    targets = settings.pop("targets", DEFAULT_TARGETS)
    setup = Setup(**settings, targets=tuple(dict.fromkeys(targets or ())))
    return plan_for(structure(model), setup, model)


# ----------------------------------------------------------------------------- the course's figures
# COURSE.md §3: fine-tuning Mistral 7B. "Full precision" there is LoRA on an fp32 base (full
# fine-tuning of 7.2 B parameters needs ≈ 116 GB before activations); 4-bit is QLoRA, 8-bit LoRA on
# an LLM.int8 base. What is not stated is taken as peft's defaults (r = 8 on q_proj and v_proj) and
# sequences of 256 tokens, without gradient checkpointing, AdamW 32-bit.
COURSE_SEQ = 256
COURSE_ROWS = (
    ("fp32", "lora", "fp32", 1, 32.0),
    ("nf4-b1", "qlora", "nf4", 1, 5.0),
    ("nf4-b4", "qlora", "nf4", 4, 10.0),
    ("nf4-b16", "qlora", "nf4", 16, 26.0),
    ("int8", "lora", "int8", 1, 20.0),
)


@dataclass(frozen=True)
class CourseRow:
    key: str
    method: str
    precision: str
    batch_size: int
    course_gb: float
    planner_gb: float
    matching_seq: int | None  # the sequence length at which the planner gives the course's figure


def course_setup(method: str, precision: str, batch: int, seq: int = COURSE_SEQ) -> Setup:
    return Setup(method=method, precision=precision, optimizer="adamw", batch_size=batch, seq_len=seq,
                 checkpointing=False, rank=8, targets=DEFAULT_TARGETS)


def matching_seq(s: Structure, method: str, precision: str, batch: int, target_gb: float) -> int | None:
    """The sequence length (a multiple of 8) at which the planner's peak equals ``target_gb``; None
    when even one token is over it or the model's context is not enough."""
    def peak(seq: int) -> float:
        return plan_for(s, course_setup(method, precision, batch, seq)).peak_gb

    lo, hi = 8, s.max_context or 32768
    if peak(lo) > target_gb or peak(hi) < target_gb:
        return None
    while hi - lo > 8:
        mid = (lo + hi) // 16 * 8
        lo, hi = (mid, hi) if peak(mid) <= target_gb else (lo, mid)
    return lo


@lru_cache(maxsize=8)
def course_reference(model: str = "mistral-7b") -> tuple[CourseRow, ...]:
    s = structure(model)
    rows = []
    for key, method, precision, batch, course_gb in COURSE_ROWS:
        p = plan_for(s, course_setup(method, precision, batch), model)
        rows.append(CourseRow(key, method, precision, batch, course_gb, p.peak_gb,
                              matching_seq(s, method, precision, batch, course_gb)))
    return tuple(rows)

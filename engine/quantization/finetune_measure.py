"""One real training step, its memory measured, beside what the fine-tuning planner says.

The planner's formulas (``engine.quantization.finetune``) are checked here against reality: a model
of the same shapes (random weights) takes one AdamW step — full fine-tuning, or LoRA through
``peft`` — and PyTorch's ``MemTracker`` (``torch.distributed._tools.mem_tracker``) follows every
tensor it allocates, by kind (parameters, gradients, optimizer states, activations, temporaries).
It works on CPU, so the check runs in the test suite (``tests/test_finetune_memory.py``) and in
``bench/finetune_memory.py``. QLoRA and 8-bit bases need bitsandbytes' CUDA kernels to train: they
are not measured here.
"""
from __future__ import annotations

from dataclasses import dataclass

from engine.quantization import finetune as ft


@dataclass(frozen=True)
class Measured:
    params: int  # bytes of parameters (base + adapters)
    gradients: int  # bytes of gradients at the end of the backward pass
    optimizer: int  # bytes of optimizer states
    after_forward: int  # activations and logits alive when the forward pass ends (what autograd keeps)
    peak: int  # the step's peak, every kind together


def _dtype(setup: ft.Setup):
    import torch

    return torch.float32 if setup.precision == "fp32" else torch.bfloat16


def build(config, setup: ft.Setup, seed: int = 0):
    """A random-weight model of ``config`` prepared for ``setup`` (full or LoRA), in train mode."""
    import torch
    from transformers import AutoModelForCausalLM

    from engine.runtime.build_lock import BUILD_LOCK

    if setup.precision not in ("fp32", "bf16"):
        raise ValueError("only fp32 and bf16 bases train on CPU")
    torch.manual_seed(seed)
    with BUILD_LOCK:
        model = AutoModelForCausalLM.from_config(config, dtype=_dtype(setup))
    if setup.lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=setup.rank, lora_alpha=2 * setup.rank, lora_dropout=0.0,
                                                 target_modules=list(setup.targets)))
    if setup.checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if setup.lora:
            model.enable_input_require_grads()
    model.config.use_cache = False
    model.train()
    return model


def optimizer_for(model, setup: ft.Setup):
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    if setup.optimizer == "adamw-8bit":
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit(params, lr=1e-4)
    # fused: the Trainer's default (adamw_torch_fused); no per-step copies of the parameters
    return torch.optim.AdamW(params, lr=1e-4, fused=True)


def measure_step(config, setup: ft.Setup, seed: int = 0) -> Measured:
    """Memory of the second training step (the first one creates the optimizer's states)."""
    import torch
    from torch.distributed._tools.mem_tracker import MemTracker

    model = build(config, setup, seed)
    opt = optimizer_for(model, setup)
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, config.vocab_size, (setup.batch_size, setup.seq_len), generator=generator)

    def step(after_forward=None):
        out = model(input_ids=ids, labels=ids)
        if after_forward:
            after_forward()
        out.loss.backward()
        return out

    step()
    opt.step()
    opt.zero_grad(set_to_none=True)
    tracker = MemTracker()
    tracker.track_external(model, opt)
    for p in model.parameters():  # MemTracker hooks every parameter's gradient: frozen ones have none
        if not p.requires_grad:
            tracker._param_to_grad_hook_handles[p] = (_NoHook(), _NoHook())
    seen: dict[str, int] = {}

    def snapshot(name: str) -> None:
        now = tracker.get_tracker_snapshot("current")
        seen[name] = sum(int(d.get(kind, 0)) for d in now.values() for kind in _ACT_KINDS)

    with tracker:
        out = step(lambda: snapshot("forward"))
        del out
        grads = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters() if p.grad is not None)
        opt.step()
        opt.zero_grad(set_to_none=True)
    peak = tracker.get_tracker_snapshot("peak")
    total = sum(int(d.get("Total", 0)) for d in peak.values())
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    states = sum(t.numel() * t.element_size() for s in opt.state.values() for t in s.values()
                 if isinstance(t, torch.Tensor) and t.dim() > 0)
    return Measured(params=params, gradients=grads, optimizer=states, after_forward=seen["forward"], peak=total)


class _NoHook:
    def remove(self) -> None:
        pass


def _kinds():
    from torch.distributed._tools.mem_tracker import _MemRefType

    return (_MemRefType.ACT, _MemRefType.TEMP)


_ACT_KINDS = _kinds()


def planned(config, setup: ft.Setup, label: str = "measured") -> ft.FinetunePlan:
    """The planner's figures for the same shapes (no context limit: the measure sets its own)."""
    s = ft.structure_of(label, config)
    return ft.plan_for(s, setup)


def forward_bytes(plan: ft.FinetunePlan, config) -> int:
    """What the planner says is alive when the forward pass ends: the activations (a recomputed
    layer comes later), the logits and the fp32 log-softmax (the loss' gradients come later too)."""
    s = plan.setup
    return plan.terms["activations"] - plan.recompute + s.tokens * config.vocab_size * (s.act_bytes + 4)

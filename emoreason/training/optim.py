"""Learning rates per module of a video-LLM: vision tower, projector (merger), audio encoder (Qwen2.5-Omni) and
language model.

A randomly initialised or newly attached vision path usually wants another step size than the language model
(Qwen2-VL-Finetune's ``vision_lr`` / ``merger_lr``, LLaVA's ``mm_projector_lr``). ``ModuleLearningRates`` is a
mixin for transformers ``Trainer`` subclasses (TRL's SFTTrainer and GRPOTrainer included): it lets the trainer
build its optimizer as usual (its optimizer class, weight-decay split, kwargs), then splits every parameter
group by module and gives each part its module's rate. The scheduler built afterwards scales each group from
its own rate.
"""

from __future__ import annotations

MODULES = ("vision", "projector", "audio", "language")
# Children of ``visual`` that project vision features into the language model: the merger, and Qwen3-VL's
# DeepStack mergers, which feed intermediate vision layers to the first LM layers (Qwen3-VL report, §2)
PROJECTOR_CHILDREN = ("merger", "deepstack_merger_list")


def module_of(name: str) -> str:
    """'vision' | 'projector' | 'audio' | 'language' for a parameter name of a Qwen-VL-style model (peft prefixes
    too): the one classification behind per-module learning rates and the recipe's freeze_* options. Qwen2.5-Omni's
    audio encoder (``audio_tower``, its output projection included) is 'audio'."""
    parts = name.split(".")
    if "audio_tower" in parts:
        return "audio"
    if "visual" in parts:
        after = parts[parts.index("visual") + 1:]
        return "projector" if after and after[0] in PROJECTOR_CHILDREN else "vision"
    return "language"


def split_param_groups(optimizer, model, rates: dict[str, float | None]) -> dict[str, int]:
    """Split ``optimizer``'s parameter groups so each module's parameters train at ``rates[module]`` (None or a
    missing module keeps the group's rate). Call before the first step. Returns parameters per module."""
    unknown = set(rates) - set(MODULES)
    if unknown:
        raise ValueError(f"unknown modules {sorted(unknown)} for per-module learning rates; use {', '.join(MODULES)}")
    if any(optimizer.state.values()):
        raise RuntimeError("per-module learning rates must be set before the optimizer's first step")
    owner = {id(p): module_of(n) for n, p in model.named_parameters()}
    counts = dict.fromkeys(MODULES, 0)
    groups = []
    for group in optimizer.param_groups:
        parts: dict[str, list] = {}
        for param in group["params"]:
            module = owner.get(id(param), "language")
            parts.setdefault(module, []).append(param)
            counts[module] += param.numel()
        for module, params in parts.items():
            rate = rates.get(module)
            new = {**group, "params": params}
            if rate is not None:
                new["lr"] = new["initial_lr"] = float(rate)
            new["module"] = module
            groups.append(new)
    optimizer.param_groups = groups
    return counts


def rates_by_module(optimizer) -> dict[str, float]:
    """The current rate of each module in an optimizer split by ``split_param_groups`` (empty if it is not)."""
    rates: dict[str, float] = {}
    for group in getattr(optimizer, "param_groups", []):
        if "module" in group and group["params"]:
            rates.setdefault(group["module"], float(group["lr"]))
    return rates


class ModuleLearningRates:
    """Mixin: ``module_learning_rates = {"vision": 1e-3, "projector": 1e-3, "audio": …}`` (language: the trainer's
    rate).

    The logs say the rates applied: ``learning_rate`` is the language model's (Trainer logs param group 0's,
    which would be the vision tower's; absent when the language model is frozen) and ``vision_learning_rate`` /
    ``projector_learning_rate`` / ``audio_learning_rate`` the others'."""

    module_learning_rates: dict[str, float | None] = {}
    _logged_module_rates: dict[str, float] = {}
    _language_rate_logged: bool = True

    def _get_learning_rate(self) -> float:
        # Trainer reads the rate after the optimizer step, before the scheduler's: so are the module rates here
        rates = rates_by_module(self.optimizer)
        if not rates:
            return super()._get_learning_rate()
        self._logged_module_rates = {f"{m}_learning_rate": r for m, r in rates.items() if m != "language"}
        # no language group (freeze_language): no rate is the language model's, so none is logged as learning_rate
        self._language_rate_logged = "language" in rates
        return rates.get("language", super()._get_learning_rate())

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "learning_rate" in logs:
            logs = {**logs, **self._logged_module_rates}
            if not self._language_rate_logged:
                logs.pop("learning_rate")
        super().log(logs, start_time)

    def create_optimizer(self, model=None):
        optimizer = super().create_optimizer(model) if model is not None else super().create_optimizer()
        rates = {k: v for k, v in (self.module_learning_rates or {}).items() if v is not None}
        if rates:
            inner = getattr(optimizer, "optimizer", optimizer)  # accelerate may wrap it later; not yet here
            split_param_groups(inner, self.model if model is None else model, rates)
        return optimizer

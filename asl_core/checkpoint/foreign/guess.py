"""Which architecture a bare state dict belongs to, from its keys and shapes, against our registry
and timm's (candidates built on the meta device: no memory, no weights), with how sure it is."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from asl_core.checkpoint.foreign.state_dict import infer_in_channels, infer_num_classes

# key patterns -> timm name prefixes worth trying (timm has 1,300+ names; building all would take minutes)
FAMILIES = (
    (("stem.0.weight", "stages.0.blocks.0.conv_dw.weight"), ("test_convnext", "convnext")),
    (("conv_stem.weight", "blocks.0.0."), ("test_efficientnet", "efficientnet", "mobilenetv3", "mobilenetv2",
                                                    "tf_efficientnet", "mnasnet", "spnasnet", "tinynet", "fbnet", "lcnet")),
    (("cls_token", "pos_embed", "blocks.0.attn.qkv.weight"), ("test_vit", "vit_", "deit_", "deit3_")),
    (("patch_embed.proj.weight", "layers.0.blocks.0.attn.qkv.weight"), ("swin",)),
    (("conv1.weight", "layer1.0.conv1.weight"), ("resnet", "resnext", "wide_resnet", "seresnet")),
    (("stem.conv.weight", "stages.0.b1.conv1.conv.weight"), ("regnet",)),
)
BUDGET_S = 10.0
VIT_WIDTHS = {192: "tiny", 384: "small", 768: "base", 1024: "large", 1280: "huge"}


@dataclass(frozen=True)
class Guess:
    arch: str
    confidence: float  # matching keys-with-shapes over the larger of the two key sets
    detail: str

    def describe(self) -> str:
        return f"{self.arch} ({self.detail})"


def _score(expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> float:
    same = sum(1 for k, v in expected.items() if k in state and tuple(state[k].shape) == tuple(v.shape))
    return same / max(len(expected), len(state), 1)


def _has(state: dict[str, torch.Tensor], key: str) -> bool:
    return key in state or (key.endswith(".") and any(k.startswith(key) for k in state))


def _hints(state: dict[str, torch.Tensor]) -> list[str]:
    """Name fragments the shapes suggest (a ViT's patch size, width and input side), to try first."""
    hints = []
    proj, pos = state.get("patch_embed.proj.weight"), state.get("pos_embed")
    if proj is not None and proj.dim() == 4:
        patch = int(proj.shape[-1])
        hints.append(f"patch{patch}")
        hints.append(VIT_WIDTHS.get(int(proj.shape[0]), "?"))
        if pos is not None and pos.dim() == 3:
            side = int((int(pos.shape[1]) - 1) ** 0.5) * patch
            hints.append(f"_{side}")
    return hints


def _candidates(state: dict[str, torch.Tensor]) -> list[str]:
    from asl_core.models import ARCHITECTURES
    from asl_core.models.timm_models import timm_names

    names = list(ARCHITECTURES)
    for keys, prefixes in FAMILIES:
        if all(_has(state, k) for k in keys):
            hints = _hints(state)
            found = [n for n in timm_names() if n.startswith(prefixes)]
            first = {p: i for i, p in enumerate(prefixes)}
            found.sort(key=lambda n: (-sum(h in n for h in hints), next(i for p, i in first.items() if n.startswith(p)),
                                      len(n), n))
            names += [f"timm/{n}" for n in found]
    return names


def guess_arch(state: dict[str, torch.Tensor], budget_s: float = BUDGET_S) -> Guess | None:
    """The best-matching architecture and its confidence (1.0: every key and shape matches), or None
    when nothing shares most of the keys. Stops at the first exact match or after ``budget_s``."""
    from asl_core.models import build_model

    num_classes = infer_num_classes(state) or 10
    in_ch = infer_in_channels(state) or 3
    best: tuple[float, str] | None = None
    start, tried = time.monotonic(), 0
    for arch in _candidates(state):
        if time.monotonic() - start > budget_s:
            break
        try:
            with torch.device("meta"):
                expected = build_model(arch, max(num_classes, 2), in_channels=in_ch,
                                       small_input=False).state_dict()
        except Exception:  # a candidate that cannot be built with these sizes is simply not it
            continue
        tried += 1
        score = _score(expected, state)
        if best is None or score > best[0]:
            best = (score, arch)
        if score == 1.0:
            break
    if best is None or best[0] < 0.5:
        return None
    score, arch = best
    detail = ("every key and shape matches" if score == 1.0 else f"{score:.0%} of keys and shapes match")
    return Guess(arch=arch, confidence=score, detail=f"{detail}; {tried} architecture{'s' if tried != 1 else ''} compared")

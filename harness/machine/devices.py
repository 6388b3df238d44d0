"""Which device a run uses, and how probes wait for it (kept free of heavy imports for the CLI)."""

from __future__ import annotations

from harness.errors import UserError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str) -> str:
    """Turn ``auto`` into the best device present; refuse a device that is not there."""
    import torch

    if device not in DEVICES:
        raise UserError(f"unknown device {device!r} (one of {', '.join(DEVICES)})")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("device 'cuda' requested but torch sees no CUDA device here")
    return device

"""Claim files and keys: what a key targets, and which one factor wins for a stretch of time."""

from __future__ import annotations

import re

import pytest

from harness.errors import UserError
from harness.projection.claims import from_arguments, load, parse_key

CLAIM = """
name = "Vendor X"
source = "datasheet p. 4"
date = 2026-11-01

[speedup]
"compute" = 1.1
"host-cpu" = 1.2
"host-cpu.compute" = 1.3
"layer:inference/compute" = 1.4
"layer:inference/host-cpu" = 1.5
"stage:embed/movement" = 1.6
"stage:embed/compute" = 1.7
"""


def test_keys_name_a_scope_and_a_resource_a_category_or_both():
    assert parse_key("host-cpu").resource == "host-cpu" and not parse_key("host-cpu").category
    assert parse_key("compute").category == "compute" and not parse_key("compute").resource
    key = parse_key("stage:embed/device.movement")
    assert (key.scope, key.scope_name, key.resource, key.category) == (
        "stage",
        "embed",
        "device",
        "movement",
    )
    for bad in ("cpu", "host-cpu.thinking", "gpu.compute", "layer/compute", "team:x/compute"):
        with pytest.raises(ValueError):
            parse_key(bad)


def test_one_factor_wins_stage_over_layer_over_none_then_the_most_specific(tmp_path):
    path = tmp_path / "claim.toml"
    path.write_text(CLAIM)
    claim = load(path)
    assert (claim.name, claim.source, claim.date) == ("Vendor X", "datasheet p. 4", "2026-11-01")
    cases = {
        ("embed", "inference", "compute", "host-cpu"): (1.7, "stage:embed/compute"),
        ("embed", "inference", "movement", "host-memory"): (1.6, "stage:embed/movement"),
        ("generate", "inference", "compute", "host-cpu"): (1.5, "layer:inference/host-cpu"),
        ("generate", "inference", "compute", "device"): (1.4, "layer:inference/compute"),
        ("parse", "ingress", "compute", "host-cpu"): (1.3, "host-cpu.compute"),
        ("parse", "ingress", "movement", "host-cpu"): (1.2, "host-cpu"),
        ("parse", "ingress", "compute", "device"): (1.1, "compute"),
        ("parse", "ingress", "movement", "link"): (1.0, ""),
    }
    for where, expected in cases.items():
        assert claim.factor(*where) == expected, where


def test_speedups_on_the_command_line_make_one_claim():
    claim = from_arguments(["host-cpu.compute=1.5", "stage:embed/movement=2"])
    assert claim.factor("embed", "inference", "movement", "host-memory") == (
        2.0,
        "stage:embed/movement",
    )
    for bad in (["compute"], ["compute=fast"], ["compute=0"], ["compute=2", "compute=3"]):
        with pytest.raises(UserError):
            from_arguments(bad)


def test_a_missing_claim_file_is_one_line(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load(tmp_path / "nope.toml")


def test_an_unquoted_dotted_key_is_explained(tmp_path):
    path = tmp_path / "claim.toml"
    path.write_text('name = "x"\n[speedup]\nhost-cpu.compute = 1.5\n')
    with pytest.raises(UserError, match=re.escape('quote a dotted key: "host-cpu.compute" = X')):
        load(path)

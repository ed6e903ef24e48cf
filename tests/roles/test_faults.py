"""The test-only fault variable MPIMARL_FAULT is parsed strictly (a typo must not silently test nothing)."""

from __future__ import annotations

import pytest

from mpimarl.errors import ConfigError
from mpimarl.roles import faults


def test_a_fault_is_armed_only_on_its_rank() -> None:
    assert faults.parse_fault("last:training:raise", 4) == faults.Fault(3, "training", "raise")
    faults.arm(1, 3, {"MPIMARL_FAULT": "1:startup:raise"})
    faults.reached("training")  # another phase: nothing happens
    with pytest.raises(faults.InjectedFault, match="injected fault at rank 1 in phase startup"):
        faults.reached("startup")
    faults.reached("startup")  # once only
    faults.arm(2, 3, {"MPIMARL_FAULT": "1:startup:raise"})
    faults.reached("startup")  # not this rank's
    faults.arm(0, 3, {})


@pytest.mark.parametrize(("spec", "message"), [
    ("1:training", "must be RANK:PHASE:KIND"), ("9:training:raise", "rank '9'"),
    ("1:warmup:raise", "phase 'warmup'"), ("1:training:explode", "kind 'explode'"),
])
def test_a_malformed_fault_is_a_config_error(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        faults.arm(0, 3, {"MPIMARL_FAULT": spec})

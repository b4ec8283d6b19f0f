"""Mutation fuzzing of every decoder at a boundary (SBE frames, JSON stream messages, bus payloads, REST pages,
dump archives): thousands of mutated inputs each give a record or an error of the project's tree, never another
exception, and a bad bus payload never costs its good neighbours. ``bench/fuzz_decoders.py`` runs the same
targets for hundreds of thousands of inputs."""

from __future__ import annotations

import pytest
from support.fuzz import FuzzTarget, fuzz, targets

INPUTS = 3000  # per decoder: a few seconds in all on a busy machine


@pytest.mark.parametrize("target", targets(), ids=lambda t: t.name)
def test_mutated_inputs_give_a_record_or_a_typed_error_only(target: FuzzTarget) -> None:
    result = fuzz(target, INPUTS, seed=20261202)
    assert not result.untyped, "\n".join(result.examples[:5])
    assert result.inputs == INPUTS
    # The mutations reach both sides: some inputs still decode, many are refused.
    assert result.decoded >= INPUTS // 20, result.to_dict()
    assert sum(result.typed.values()) >= INPUTS // 5, result.to_dict()

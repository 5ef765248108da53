"""Label values: any name becomes a valid, collision-free label value."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from stepforge.services.kubernetes.labels import label_value, selector

VALID = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")


def test_a_valid_value_is_kept_as_it_is() -> None:
    assert label_value("executions-0a1b") == "executions-0a1b"


def test_names_with_slashes_become_valid_and_keep_a_hash() -> None:
    value = label_value("environments/default/steps/train")

    assert VALID.match(value)
    assert value.startswith("environments-default-steps-train-")


@given(st.text(max_size=200))
def test_every_text_becomes_a_valid_label_value(text: str) -> None:
    value = label_value(text)

    assert len(value) <= 63
    assert VALID.match(value), value


def test_two_names_that_clean_alike_do_not_collide() -> None:
    assert label_value("a/b") != label_value("a:b")


def test_the_selector_names_manager_and_component() -> None:
    assert selector("execution") == (
        "app.kubernetes.io/managed-by=stepforge,app.kubernetes.io/component=execution"
    )

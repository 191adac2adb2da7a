"""Both-order combination, Bradley–Terry, routing, and the template sandbox."""

from __future__ import annotations

import pytest

from app.core.errors import BadRequest
from app.judging.prompts import DEFAULT_TEMPLATE, check_template, render_pair
from app.judging.scoring import bradley_terry, combine, route


def test_a_judge_that_always_picks_the_first_position_is_inconsistent() -> None:
    verdict = combine(1, 2, p_first_when_a_first=0.8, p_first_when_b_first=0.8)
    assert not verdict.consistent
    assert verdict.preference == pytest.approx(0.5)


def test_agreeing_orders_average_their_probabilities() -> None:
    verdict = combine(1, 2, p_first_when_a_first=0.9, p_first_when_b_first=0.3)
    assert verdict.consistent and verdict.preference == pytest.approx(0.8)
    assert verdict.confidence == pytest.approx(0.8)


def test_bradley_terry_orders_a_transitive_set() -> None:
    pairs = [combine(1, 2, 0.2, 0.8), combine(1, 3, 0.1, 0.9), combine(2, 3, 0.3, 0.7)]
    # 3 beats 1 and 2; 2 beats 1.
    assert bradley_terry([1, 2, 3], pairs) == [3, 2, 1]


def test_routing_sends_uncertain_and_inconsistent_items_to_humans() -> None:
    kwargs = {"threshold": 0.7, "review_fraction": 0.0, "run_id": 1, "item_id": 1}
    assert route(consistent=False, confidence=0.99, **kwargs) == "human"
    assert route(consistent=True, confidence=0.6, **kwargs) == "human"
    assert route(consistent=True, confidence=0.9, **kwargs) == "accepted"


def test_review_sample_is_the_configured_fraction_and_stable() -> None:
    routes = [route(consistent=True, confidence=0.9, threshold=0.7, review_fraction=0.2,
                    run_id=7, item_id=i) for i in range(2000)]
    assert 0.17 < routes.count("review") / len(routes) < 0.23
    again = [route(consistent=True, confidence=0.9, threshold=0.7, review_fraction=0.2,
                   run_id=7, item_id=i) for i in range(2000)]
    assert routes == again


def test_template_sees_rules_prompt_and_both_responses() -> None:
    q = render_pair(DEFAULT_TEMPLATE, rules=[{"id": "kind", "text": "Be kind",
                                              "severity": "high"}],
                    prompt=[{"role": "user", "content": "Hi?"}], response_a="Yo",
                    response_b="Hello")
    text = q.messages[0]["content"]
    assert "[kind] (high) Be kind" in text and "USER: Hi?" in text
    assert text.index("Yo") < text.index("Hello") and q.choices == ("A", "B")


@pytest.mark.parametrize("template", [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ response_a.__class__.__init__.__globals__ }}",
    "{% for c in ().__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
])
def test_templates_reaching_python_internals_are_refused(template: str) -> None:
    with pytest.raises(BadRequest, match="refused by the sandbox"):
        check_template(template)


def test_a_broken_template_is_a_clear_error() -> None:
    with pytest.raises(BadRequest, match="does not render"):
        check_template("{{ no_such_variable }}")

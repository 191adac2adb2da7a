"""The label submit route under generated form payloads (hypothesis), through the real app
with a logged-in labeler and a valid CSRF token: random scales, rankings with duplicated,
missing or foreign ids, ratings out of range, edits of responses that are not the item's,
unknown rule ids, huge and odd unicode strings. Every answer is a 2xx, or a 4xx that says
what is wrong; never a 5xx; and no stored label breaks its task's invariants."""

from __future__ import annotations

import re
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from app.models import HumanLabel, Item, Response
from app.models.items import ResponseSource
from tests.support import login, make_project, make_user, write

ITEM_RE = re.compile(r'name="item_id" value="(\d+)"')
RESPONSE_RE = re.compile(r'data-response-id="(\d+)"')
RULES = [("honest", "No false claims"), ("polite", "No insults")]
EXAMPLES = 50

TEXT = st.text(st.characters(codec="utf-8") | st.sampled_from(["\x00", "\u202e", "😀", ","]),
               max_size=40)
HUGE = st.sampled_from([10_001, 100_001]).map(lambda n: "é" * n)
NUL = TEXT.map(lambda s: f"{s}\x00{s}")  # PostgreSQL cannot store it in a text column
# small, at the edges of 32- and 64-bit ids, or anywhere
INTS = st.one_of(st.integers(-3, 3), st.sampled_from([2**31, 2**63, -2**63 - 1, 2**70]),
                 st.integers(-2**70, 2**70))


class State:
    """The labeler's session and the item leased to them right now."""

    def __init__(self, client, project, csrf: str) -> None:  # noqa: ANN001
        self.client, self.project, self.csrf = client, project, csrf

    def lease(self) -> tuple[int, list[int]] | None:
        page = self.client.post(f"/projects/{self.project.id}/label/next",
                                data={"csrf_token": self.csrf}, headers={"HX-Request": "true"})
        assert page.status_code == 200, page.text
        match = ITEM_RE.search(page.text)
        if match is None:
            return None
        return int(match.group(1)), [int(i) for i in dict.fromkeys(
            RESPONSE_RE.findall(page.text))]


def _valid(draw: st.DrawFn, task_type: str, response_ids: list[int]) -> list[tuple[str, str]]:
    """A form a careful labeler would send for this task type."""
    if task_type == "pairwise":
        form = [("scale", draw(st.sampled_from("12345")))]
    elif task_type == "ranking":
        form = [("ranking", ",".join(map(str, draw(st.permutations(response_ids)))))]
    else:
        form = [(f"rating_{rid}", str(draw(st.integers(1, 7)))) for rid in response_ids]
        if draw(st.booleans()):
            form += [("edit_response_id", str(draw(st.sampled_from(response_ids)))),
                     ("edit_text", draw(st.one_of(TEXT, NUL)))]
    for rid in draw(st.lists(st.sampled_from(response_ids), max_size=2)):
        form.append(("violation", f"{rid}:{draw(st.sampled_from([k for k, _ in RULES]))}"))
    return form


def _wild(draw: st.DrawFn, response_ids: list[int]) -> list[tuple[str, str]]:
    """Any field gone wrong: ids near the real ones or far off, text where numbers go."""
    real = st.sampled_from(response_ids)
    an_id = st.one_of(real, real, INTS)
    form: list[tuple[str, str]] = []
    if draw(st.booleans()):
        form.append(("scale", draw(st.one_of(st.sampled_from("12345"), TEXT))))
    if draw(st.booleans()):
        ranking = draw(st.one_of(st.permutations(response_ids), st.lists(an_id, max_size=6)))
        joined = ",".join(map(str, ranking))
        form.append(("ranking", draw(st.one_of(st.just(joined), TEXT,
                                               st.just(joined + ",x"), st.just(" , ")))))
    for rid in draw(st.lists(an_id, max_size=len(response_ids) + 1)):
        form.append((f"rating_{rid}", draw(st.one_of(st.integers(1, 7).map(str),
                                                     INTS.map(str), TEXT))))
    if draw(st.integers(0, 3)) == 0:
        form.append((f"rating_{draw(TEXT)}", "4"))
    if draw(st.booleans()):
        form.append(("edit_response_id", draw(st.one_of(an_id.map(str), TEXT))))
        form.append(("edit_text", draw(st.one_of(TEXT, HUGE))))
    for _ in range(draw(st.integers(0, 3))):
        rule = draw(st.one_of(st.sampled_from([k for k, _ in RULES]), TEXT))
        form.append(("violation", draw(st.one_of(an_id.map(lambda r, k=rule: f"{r}:{k}"),
                                                 TEXT))))
    return form


@st.composite
def payloads(draw: st.DrawFn, task_type: str, item_id: int,
             response_ids: list[int]) -> list[tuple[str, str]]:
    """A valid form, a valid form with wild fields added, or a wild one; the ids, key,
    rationale and time right or wrong independently."""
    mode = draw(st.sampled_from(["valid", "valid", "mixed", "wild"]))
    form = _valid(draw, task_type, response_ids) if mode != "wild" else []
    if mode != "valid":
        form += _wild(draw, response_ids)
    form += [
        ("item_id", draw(st.one_of(st.just(str(item_id)), st.just(str(item_id)),
                                   st.just(str(item_id)), INTS.map(str), TEXT))),
        ("idempotency_key", draw(st.one_of(st.just(uuid.uuid4().hex), st.just(uuid.uuid4().hex),
                                           TEXT, st.text(min_size=65, max_size=70)))),
    ]
    if draw(st.booleans()):
        form.append(("rationale", draw(st.one_of(TEXT, HUGE, NUL))))
    if draw(st.booleans()):
        form.append(("time_spent_ms", draw(st.one_of(INTS.map(str), TEXT))))
    return form


def check_label(label: HumanLabel, task_type: str, originals: set[int], db) -> None:  # noqa: ANN001
    """The invariants every stored label keeps, per task type."""
    keys = {k for k, _ in RULES}
    assert label.task_type == task_type
    assert set(map(int, label.rule_violations)) <= originals
    assert all(v and set(v) <= keys for v in label.rule_violations.values())
    assert len(label.rationale) <= 10_000 and "\x00" not in label.rationale
    assert 0 <= label.time_spent_ms <= 24 * 3600 * 1000
    if task_type == "pairwise":
        assert label.choice in {"a", "b", "tie"}
        assert label.strength is None if label.choice == "tie" else label.strength in {1, 2}
        assert {label.response_a_id, label.response_b_id} <= originals
    elif task_type == "ranking":
        assert sorted(label.ranking) == sorted(originals), "a ranking is a permutation"
    else:
        assert set(map(int, label.ratings)) == originals
        assert all(1 <= v <= 7 for v in label.ratings.values())
        if label.edited_response_id is not None:
            edit = db.get(Response, label.edited_response_id)
            assert edit.source == ResponseSource.HUMAN_EDIT and edit.item_id == label.item_id
            assert edit.parent_response_id in originals and edit.text.strip()
            assert "\x00" not in edit.text


def _items(n: int, responses: int) -> list[dict]:
    return [{"external_id": f"item-{i}", "prompt": f"Question {i}?",
             "responses": [f"Answer {j} to {i}." for j in range(responses)]} for i in range(n)]


@pytest.mark.parametrize(("task_type", "responses"), [("pairwise", 2), ("ranking", 3),
                                                      ("rate_and_edit", 3)])
def test_generated_label_forms_never_give_a_server_error(client, db, task_type: str,
                                                         responses: int) -> None:
    admin = make_user("admin@example.org", admin=True)
    labeler = make_user("lee@example.org")
    project = make_project(admin, task_type=task_type, k=1, rules=RULES,
                           members={"lee@example.org": "labeler"},
                           items=_items(EXAMPLES + 10, responses))
    state = State(client, project, login(client, "lee@example.org"))
    outcomes: dict[int, int] = {}

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture,
                                     HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(data=st.data())
    def submit_one(data: st.DataObject) -> None:
        leased = state.lease()
        assert leased is not None, "the project ran out of items"
        item_id, response_ids = leased
        form = data.draw(payloads(task_type, item_id, response_ids))
        before = _count(db)
        fields: dict[str, list[str]] = {"csrf_token": [state.csrf]}
        for key, value in form:  # repeated keys (violation, rating_N) stay repeated
            fields.setdefault(key, []).append(value)
        response = client.post(f"/projects/{project.id}/label/submit", data=fields,
                               headers={"HX-Request": "true"})
        outcomes[response.status_code] = outcomes.get(response.status_code, 0) + 1
        assert response.status_code < 500, (form, response.text[-2000:])
        if response.status_code >= 400:
            assert 'role="alert"' in response.text and "<strong>" in response.text, \
                response.text
            assert _count(db) == before, "a refused label must not be stored"
        for label in _labels(db, labeler.id):
            originals = set(db.scalars(select(Response.id).where(
                Response.item_id == label.item_id,
                Response.source != ResponseSource.HUMAN_EDIT)))
            check_label(label, task_type, originals, db)

    submit_one()
    # The generator reached both sides: labels were stored and labels were refused.
    assert outcomes.get(200, 0) > 0 and sum(n for s, n in outcomes.items() if s >= 400) > 0, \
        outcomes
    db.rollback()
    over = db.scalar(select(func.count()).select_from(Item).where(
        Item.project_id == project.id, Item.label_count > project.overlap_k))
    assert over == 0, "no item has more than k labels"


def _count(db) -> int:  # noqa: ANN001
    db.rollback()  # a fresh snapshot: what the server has committed by now
    return db.scalar(select(func.count()).select_from(HumanLabel))


def _labels(db, user_id: int) -> list[HumanLabel]:  # noqa: ANN001
    db.rollback()
    return list(db.scalars(select(HumanLabel).where(HumanLabel.user_id == user_id)))


def test_a_ranking_with_a_word_in_it_is_a_400_with_a_message(client) -> None:
    admin = make_user("admin@example.org", admin=True)
    make_user("lee@example.org")
    project = make_project(admin, task_type="ranking", members={"lee@example.org": "labeler"},
                           items=_items(2, 3))
    state = State(client, project, login(client, "lee@example.org"))
    item_id, ids = state.lease()
    response = client.post(f"/projects/{project.id}/label/submit", headers={"HX-Request": "true"},
                           data={"csrf_token": state.csrf, "item_id": str(item_id),
                                 "idempotency_key": uuid.uuid4().hex,
                                 "ranking": f"{ids[0]},{ids[1]},third"})
    assert response.status_code == 400
    assert "ranking" in response.text.lower()
    assert write(lambda d: d.scalar(select(func.count()).select_from(HumanLabel))) == 0

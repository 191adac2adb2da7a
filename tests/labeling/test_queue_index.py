"""The human queue reads an index that holds only items still wanting labels (items.in_queue):
the flag follows labels, k, the AI judge's route and gold, and next-item stays one index
probe however many items are finished."""

from __future__ import annotations

from sqlalchemy import select, text

from app.consensus.service import set_gold
from app.items.repository import original_responses
from app.judging.repository import set_item_routing
from app.labeling import service
from app.labeling.schemas import LabelIn
from app.models import Item, Project
from app.projects.schemas import MemberIn, ProjectIn
from app.projects.service import add_member, update_project
from tests.support import label_all, make_project, make_user, sample_items, write


def pick_a(task) -> dict:  # noqa: ANN001
    return {"choice": "a", "strength": 1}


def flags(db, project_id: int) -> dict[str, bool]:  # noqa: ANN001
    db.rollback()
    return dict(db.execute(select(Item.external_id, Item.in_queue)
                           .where(Item.project_id == project_id)).all())


def assert_flags_follow_the_rows(db, project_id: int) -> None:  # noqa: ANN001
    """in_queue is exactly: fewer labels than k, not AI-accepted, not gold."""
    db.rollback()
    k = db.get(Project, project_id).overlap_k
    for item in db.scalars(select(Item).where(Item.project_id == project_id)):
        wanted = item.label_count < k and not item.ai_accepted and not item.is_gold
        assert item.in_queue == wanted, (item.external_id, item.label_count, k)


def set_k(project, k: int):  # noqa: ANN001, ANN201
    """Change the project's k as the settings page does; returns the project as it is now."""
    def change(db):  # noqa: ANN001, ANN202
        p = db.get(Project, project.id)
        update_project(db, project=p, data=ProjectIn(
            name=p.name, task_type=p.task_type, overlap_k=k, lease_minutes=p.lease_minutes))
        return p
    return write(change)


def test_in_queue_follows_labels_k_the_judge_and_gold(db) -> None:
    admin = make_user("admin@example.org", admin=True)
    bo = make_user("bo@example.org")
    project = make_project(admin, k=2, items=sample_items(4),
                           members={"bo@example.org": "labeler"})
    assert set(flags(db, project.id).values()) == {True}

    assert label_all(project, admin, pick_a) == 4
    assert set(flags(db, project.id).values()) == {True}  # 1 label of 2
    assert label_all(project, bo, pick_a) == 4
    assert set(flags(db, project.id).values()) == {False}  # finished
    assert_flags_follow_the_rows(db, project.id)

    project = set_k(project, 3)  # finished items want a third label again
    assert set(flags(db, project.id).values()) == {True}
    carol = make_user("carol@example.org")
    assert label_all(project, carol, pick_a) == 4
    set_k(project, 1)
    assert set(flags(db, project.id).values()) == {False}
    project = set_k(project, 5)

    ids = dict(db.execute(select(Item.external_id, Item.id)
                          .where(Item.project_id == project.id)).all())
    write(lambda db: set_item_routing(db, item_id=ids["item-0"], route="accepted"))
    assert flags(db, project.id)["item-0"] is False  # the judge was sure: no human needed
    write(lambda db: set_item_routing(db, item_id=ids["item-0"], route="human"))
    assert flags(db, project.id)["item-0"] is True

    def gold(on: bool) -> None:
        def do(db):  # noqa: ANN001, ANN202
            rids = [r.id for r in original_responses(db, item_id=ids["item-1"])]
            set_gold(db, project=db.get(Project, project.id), item_id=ids["item-1"],
                     ranking=rids if on else None)
        write(do)

    gold(True)
    assert flags(db, project.id)["item-1"] is False  # gold comes by its own way
    gold(False)
    assert flags(db, project.id)["item-1"] is True
    assert_flags_follow_the_rows(db, project.id)


def test_a_finished_item_is_not_handed_out_and_the_queue_skips_it_by_index(db) -> None:
    admin = make_user("admin@example.org", admin=True)
    project = make_project(admin, k=1, items=sample_items(30))
    labeled = 0
    while labeled < 25:
        task = write(service.next_task, project=project, user=admin)
        assert task is not None
        write(service.submit_label, project=project, user=admin, data=LabelIn(
            item_id=task.item.id, idempotency_key=f"key-{labeled:08d}", **pick_a(task)))
        labeled += 1
    db.rollback()
    assert db.scalar(select(Item.id).where(Item.project_id == project.id, Item.in_queue)
                     .order_by(Item.id).limit(1)) is not None
    bo = make_user("bo@example.org")
    write(lambda db: add_member(db, project=db.get(Project, project.id),
                                data=MemberIn(email="bo@example.org", role="labeler")))
    seen = set()
    while (task := write(service.next_task, project=project, user=bo)) is not None:
        seen.add(task.item.external_id)
        write(service.skip_item, project=project, user=bo, item_id=task.item.id)
    assert len(seen) == 5  # only the 5 unfinished items

    # The plan walks the queue index with the flag among its keys: finished items are
    # never read, so the cost does not grow as a project fills up.
    if db.get_bind().dialect.name == "postgresql":
        db.execute(text("SET enable_seqscan = off"))  # a 30-row table: ask for the index plan
        plan = "\n".join(db.scalars(text(
            "EXPLAIN SELECT id FROM items WHERE project_id = :p AND ready AND in_queue "
            "ORDER BY queue_rank, id LIMIT 1"), {"p": project.id}))
    else:
        plan = "\n".join(str(r[-1]) for r in db.execute(text(
            "EXPLAIN QUERY PLAN SELECT id FROM items WHERE project_id = :p AND ready = 1 "
            "AND in_queue = 1 ORDER BY queue_rank, id LIMIT 1"), {"p": project.id}))
    db.rollback()
    assert "ix_items_human_queue" in plan, plan

"""Project use cases: create and edit projects, their members and their rules."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.auth import repository as users
from app.consensus.repository import mark_project_stale
from app.core.db import memo
from app.core.errors import NotFound
from app.items.repository import refresh_in_queue
from app.models import Item, Project, ProjectMember, Rule, RuleSet, User
from app.projects import repository
from app.projects.schemas import MemberIn, ProjectIn, RuleIn


def create_project(db: Session, *, data: ProjectIn, creator: User) -> Project:
    """Create a project; its creator becomes its admin and its rules version 1."""
    project = Project(
        name=data.name,
        task_type=data.task_type,
        instructions_md=data.instructions_md,
        overlap_k=data.overlap_k,
        lease_minutes=data.lease_minutes,
        weighting=data.weighting,
        conflict_threshold=data.conflict_threshold,
        gold_rate=data.gold_rate,
        created_by_id=creator.id,
    )
    db.add(project)
    db.flush()
    db.add(ProjectMember(project_id=project.id, user_id=creator.id, role="admin"))
    set_rules(db, project=project, rules=data.rules)
    db.flush()
    return project


def update_project(db: Session, *, project: Project, data: ProjectIn) -> Project:
    """Edit settings; rules that changed become a new rule-set version."""
    project.name = data.name
    project.instructions_md = data.instructions_md
    k_changed = project.overlap_k != data.overlap_k
    project.overlap_k = data.overlap_k
    project.lease_minutes = data.lease_minutes
    if k_changed:  # items finished under the old k may want labels again, or not any more
        db.flush()
        refresh_in_queue(db, where=Item.project_id == project.id)
    if (project.weighting, project.conflict_threshold) != (data.weighting,
                                                            data.conflict_threshold):
        mark_project_stale(db, project_id=project.id)  # the policy changed: recompute
    project.weighting = data.weighting
    project.conflict_threshold = data.conflict_threshold
    project.gold_rate = data.gold_rate
    # The task type is fixed once labels exist; changing it would orphan their meaning.
    set_rules(db, project=project, rules=data.rules)
    db.flush()
    return project


# Rule sets, for every request of this process: a rule set never changes once made (new
# rules make a new version), so its id, project and time of making name its rules.
_RULE_SETS: dict[tuple, tuple[RuleSet, list[Rule]]] = {}
_RULE_SETS_KEPT = 256


def get_rules(db: Session, *, project_id: int,
              current: Project | None = None) -> tuple[RuleSet | None, list[Rule]]:
    """The project's current rules; read once per session (a request), then remembered.

    ``current``, the project as the request's authorization read it (with its latest rule
    set's id and time, ``Project.current_rule_set_id``/``_at``), spares the query: that rule
    set comes from this process's cache, read once. Its rows are detached, read-only.
    """
    rules = memo(db, "rules")
    if project_id not in rules:
        rules[project_id] = _current_rules(db, project_id, current)
    return rules[project_id]


def _current_rules(db: Session, project_id: int,
                   current: Project | None) -> tuple[RuleSet | None, list[Rule]]:
    if current is None or current.current_rule_set_id is None:  # not read with the project
        return repository.current_rules(db, project_id=project_id)
    if current.current_rule_set_id == 0:
        return None, []
    key = (current.current_rule_set_id, project_id, current.current_rule_set_at)
    cached = _RULE_SETS.get(key)
    if cached is None:
        found = repository.current_rules(db, project_id=project_id)
        if found[0] is None or (found[0].id, found[0].project_id, found[0].created_at) != key:
            return found  # new rules since the project was read: not cached
        for row in (found[0], *found[1]):
            db.expunge(row)
        if len(_RULE_SETS) >= _RULE_SETS_KEPT:
            _RULE_SETS.clear()
        _RULE_SETS[key] = cached = found
    return cached


def set_rules(db: Session, *, project: Project, rules: list[RuleIn]) -> RuleSet:
    """Make a new rule-set version unless the rules are the same as the current one."""
    current, existing = get_rules(db, project_id=project.id)
    if current is not None and [(r.key, r.text, r.severity) for r in existing] == [
        (r.id, r.text, r.severity) for r in rules
    ]:
        return current
    rule_set = RuleSet(project_id=project.id, version=(current.version + 1) if current else 1)
    db.add(rule_set)
    db.flush()
    new_rules = [Rule(rule_set_id=rule_set.id, key=r.id, text=r.text, severity=r.severity,
                      position=i) for i, r in enumerate(rules)]
    db.add_all(new_rules)
    db.flush()
    # The rules from now on in this transaction, whatever rule-set id the project was read with.
    memo(db, "rules")[project.id] = (rule_set, new_rules)
    return rule_set


def add_member(db: Session, *, project: Project, data: MemberIn) -> ProjectMember:
    """Add a user by email with a role, or change the role of one already there."""
    user = users.get_user_by_email(db, email=data.email)
    if user is None:
        raise NotFound(f"No user with the email {data.email.strip().lower()}.")
    member = repository.get_member(db, project_id=project.id, user_id=user.id)
    if member is None:
        member = ProjectMember(project_id=project.id, user_id=user.id, role=data.role)
        db.add(member)
    else:
        member.role = data.role
    db.flush()
    return member


def remove_member(db: Session, *, project: Project, user_id: int) -> None:
    member = repository.get_member(db, project_id=project.id, user_id=user_id)
    if member is None:
        raise NotFound("That user is not a member of this project.")
    db.delete(member)
    db.flush()

"""Queries for projects, members and rules."""

from __future__ import annotations

from sqlalchemy import ColumnElement, Select, bindparam, exists, func, select, type_coerce
from sqlalchemy.orm import Session, with_expression

from app.core.db import ONE_ROW, memo
from app.models import JudgeConfig, Project, ProjectMember, Rule, RuleSet, User
from app.models.types import UTCDateTime


def get_project(db: Session, *, project_id: int) -> Project | None:
    return db.get(Project, project_id)


def _latest_rule_set(column):  # noqa: ANN001, ANN202
    return (select(column).where(RuleSet.project_id == Project.id)
            .order_by(RuleSet.version.desc()).limit(ONE_ROW).scalar_subquery())


# Read with every project by the queries that authorize a request: the project's state that
# the labeling hot path needs (Project.current_rule_set_id and _at, .shows_suggestions).
_PROJECT_STATE = (
    with_expression(Project.current_rule_set_id, func.coalesce(_latest_rule_set(RuleSet.id), 0)),
    with_expression(Project.current_rule_set_at,
                    type_coerce(_latest_rule_set(RuleSet.created_at), UTCDateTime)),
    with_expression(Project.shows_suggestions, exists().where(
        JudgeConfig.project_id == Project.id, JudgeConfig.show_suggestions)),
)


def with_project_and_role(query: Select, *, user_id: ColumnElement) -> Select:
    """``query`` with two more columns, as ``get_project_and_role`` reads them: the project
    ``:project_id`` (None: there is no such project) and the role in it of the user whose id
    is the column ``user_id`` (None: not a member). Outer joins: ``query``'s rows stay."""
    return (query.add_columns(Project, ProjectMember.role)
            .outerjoin(Project, Project.id == bindparam("project_id"))
            .outerjoin(ProjectMember, _membership(user_id))
            .options(*_PROJECT_STATE))


def _membership(user_id: ColumnElement) -> ColumnElement[bool]:
    return (ProjectMember.project_id == Project.id) & (ProjectMember.user_id == user_id)


# Built once: every project page and labeling call runs it with new parameters.
_PROJECT_AND_ROLE = (
    select(Project, ProjectMember.role)
    .outerjoin(ProjectMember, _membership(bindparam("user_id")))
    .where(Project.id == bindparam("project_id"))
    .options(*_PROJECT_STATE)
)


def get_project_and_role(db: Session, *, project_id: int,
                         user_id: int) -> tuple[Project, str | None] | None:
    """The project and the user's role in it (None if not a member), in one query, or none
    when the request's first query read them already (remember_project_and_role)."""
    known = memo(db, "project_and_role")
    if (project_id, user_id) in known:
        return known[(project_id, user_id)]
    row = db.execute(_PROJECT_AND_ROLE, {"project_id": project_id, "user_id": user_id}).first()
    return (row[0], row[1]) if row else None


def remember_project_and_role(db: Session, *, project_id: int, user_id: int,
                              project: Project | None, role: str | None) -> None:
    """What a query built with ``with_project_and_role`` read, for get_project_and_role
    in the same transaction."""
    memo(db, "project_and_role")[(project_id, user_id)] = (
        (project, role) if project is not None else None)


def get_member(db: Session, *, project_id: int, user_id: int) -> ProjectMember | None:
    return db.scalar(
        select(ProjectMember).where(
            ProjectMember.project_id == project_id, ProjectMember.user_id == user_id
        )
    )


def list_projects_for(db: Session, *, user: User) -> list[tuple[Project, str]]:
    """Projects the user may see, with their role in each."""
    if user.is_admin:
        rows = db.execute(
            select(Project, func.coalesce(ProjectMember.role, "admin"))
            .outerjoin(
                ProjectMember,
                (ProjectMember.project_id == Project.id) & (ProjectMember.user_id == user.id),
            )
            .order_by(Project.id.desc())
        )
    else:
        rows = db.execute(
            select(Project, ProjectMember.role)
            .join(ProjectMember, ProjectMember.project_id == Project.id)
            .where(ProjectMember.user_id == user.id)
            .order_by(Project.id.desc())
        )
    return [(p, role) for p, role in rows]


def list_members(db: Session, *, project_id: int) -> list[tuple[ProjectMember, User]]:
    return [
        (m, u)
        for m, u in db.execute(
            select(ProjectMember, User)
            .join(User, User.id == ProjectMember.user_id)
            .where(ProjectMember.project_id == project_id)
            .order_by(User.email)
        )
    ]


_CURRENT_RULES = (  # built once
    select(RuleSet, Rule)
    .outerjoin(Rule, Rule.rule_set_id == RuleSet.id)
    .where(RuleSet.id == select(RuleSet.id)
           .where(RuleSet.project_id == bindparam("project_id"))
           .order_by(RuleSet.version.desc())
           .limit(ONE_ROW)
           .scalar_subquery())
    .order_by(Rule.position)
)


def current_rules(db: Session, *, project_id: int) -> tuple[RuleSet | None, list[Rule]]:
    """The latest rule-set version and its rules, in one query."""
    rows = db.execute(_CURRENT_RULES, {"project_id": project_id}).all()
    if not rows:
        return None, []
    return rows[0][0], [rule for _, rule in rows if rule is not None]


"""Who may do what in a project. Non-members get 404, so a project's existence does not leak."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy.orm import Session

from app.core.errors import Forbidden, NotFound
from app.models import Project, User
from app.models.projects import MemberRole
from app.projects import repository


class Action(StrEnum):
    VIEW = "view"
    LABEL = "label"
    SEE_PROGRESS = "see_progress"
    REVIEW = "review"  # approve, override or edit AI labels
    MANAGE = "manage"  # settings, members, rules, tokens
    IMPORT = "import"
    EXPORT = "export"


_ALLOWED: dict[Action, set[str]] = {
    Action.VIEW: {MemberRole.ADMIN, MemberRole.REVIEWER, MemberRole.LABELER},
    Action.LABEL: {MemberRole.ADMIN, MemberRole.REVIEWER, MemberRole.LABELER},
    Action.SEE_PROGRESS: {MemberRole.ADMIN, MemberRole.REVIEWER},
    Action.REVIEW: {MemberRole.ADMIN, MemberRole.REVIEWER},
    Action.MANAGE: {MemberRole.ADMIN},
    Action.IMPORT: {MemberRole.ADMIN},
    Action.EXPORT: {MemberRole.ADMIN},
}


@dataclass(frozen=True)
class ProjectAccess:
    project: Project
    role: str  # the member's role, or "admin" for a site admin

    def can(self, action: Action) -> bool:
        return self.role in _ALLOWED[action]


def authorize(db: Session, *, user: User, project_id: int, action: Action) -> ProjectAccess:
    """Return the project if ``user`` may do ``action`` on it; 404 for outsiders, 403 else."""
    found = repository.get_project_and_role(db, project_id=project_id, user_id=user.id)
    if found is None:
        raise NotFound("No such project.")
    project, role = found
    if user.is_admin:
        return ProjectAccess(project=project, role=MemberRole.ADMIN)
    if role is None:
        raise NotFound("No such project.")
    access = ProjectAccess(project=project, role=role)
    if not access.can(action):
        raise Forbidden("Your role in this project does not allow that.")
    return access


def can_create_projects(user: User) -> bool:
    return user.is_admin

"""ORM models, one module per aggregate. Importing this package registers every table."""

from app.models.consensus import Adjudication, ItemConsensus, LabelerReliability
from app.models.exports import ExportSnapshot
from app.models.generation import GenerationRun
from app.models.items import ImportJob, Item, ItemTag, Response
from app.models.judging import (
    AiLabel,
    JudgeCacheEntry,
    JudgeConfig,
    JudgePreview,
    JudgeRun,
    JudgeRunItem,
    Review,
)
from app.models.labels import Assignment, HumanLabel, ProgressCount
from app.models.projects import Project, ProjectMember, Rule, RuleSet
from app.models.training import ModelCheckpoint, TrainingMetric, TrainingRun
from app.models.users import ApiToken, LoginFailure, User, UserSession

__all__ = [
    "GenerationRun",
    "ModelCheckpoint",
    "TrainingMetric",
    "TrainingRun",
    "Adjudication",
    "ExportSnapshot",
    "ItemConsensus",
    "LabelerReliability",
    "AiLabel",
    "JudgeCacheEntry",
    "JudgeConfig",
    "JudgePreview",
    "JudgeRun",
    "JudgeRunItem",
    "LoginFailure",
    "ApiToken",
    "Assignment",
    "HumanLabel",
    "ProgressCount",
    "ImportJob",
    "ItemTag",
    "Item",
    "Project",
    "ProjectMember",
    "Response",
    "Review",
    "Rule",
    "RuleSet",
    "User",
    "UserSession",
]

"""The analytics page: agreement, labelers, the judge against people, sources over time."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from app.analytics import charts
from app.analytics.service import project_analytics
from app.auth.deps import DbSession, require_user
from app.consensus.service import refresh_for_page
from app.core.templating import render
from app.models import User
from app.projects.policies import Action, authorize

router = APIRouter(include_in_schema=False)

SOURCE_NAMES = {"human": "human labels", "ai_accepted": "AI accepted",
                "ai_reviewed": "AI reviewed", "adjudicated": "adjudicated"}


@router.get("/projects/{project_id}/analytics")
def analytics_page(request: Request, project_id: int, user: User = Depends(require_user),
                   db: Session = DbSession) -> Response:
    access = authorize(db, user=user, project_id=project_id, action=Action.SEE_PROGRESS)
    stale = refresh_for_page(db, project_id=project_id)
    a = project_analytics(db, project=access.project)
    labelers = a.labelers

    def bars(attr: str, scale: float = 1.0) -> list[tuple[str, float]]:
        return [(s.name, getattr(s, attr) * scale) for s in labelers
                if getattr(s, attr) is not None]

    days, series = a.sources_by_day
    progress = a.progress
    figures = {
        "throughput": charts.bar_chart([(s.name, float(s.labels)) for s in labelers],
                                       title="Labels per labeler"),
        "median_time": charts.bar_chart(bars("median_seconds"), title="Median time per item",
                                        unit=" s"),
        "agreement": charts.bar_chart(bars("agreement", 100), title="Agreement with consensus",
                                      unit="%", max_value=100),
        "gold": charts.bar_chart(bars("gold_accuracy", 100), title="Gold accuracy", unit="%",
                                 max_value=100),
        "position": charts.bar_chart(bars("first_shown_rate", 100),
                                     title="Picks the first-shown response", unit="%",
                                     max_value=100),
        "ties": charts.bar_chart(bars("tie_rate", 100), title="Tie rate", unit="%",
                                 max_value=100),
        "sources": charts.stacked_bar_chart(days, {SOURCE_NAMES[k]: v for k, v in series.items()},
                                            title="Labels per day by source"),
        "judge_by_day": charts.line_chart(
            [d.strftime("%b %d") for d, _, _ in a.judge_by_day],
            {"judge agrees with people": [None if p is None else 100 * p
                                          for _, p, _ in a.judge_by_day]},
            title="Judge vs people, by day the judge labeled", y_max=100, unit="%"),
        "judge_rules": charts.bar_chart(
            [(key, 100 * ag.percent) for key, ag in a.judge.per_rule.items()
             if ag.percent is not None],
            title="Judge vs people, per rule", unit="%", max_value=100),
        "progress": charts.bar_chart([("done", float(progress.done)),
                                      ("in progress", float(progress.in_progress)),
                                      ("to do", float(progress.todo))], title="Items"),
    }
    captions = {"throughput": "Labels", "median_time": "Median seconds per item",
                "agreement": "Agreement with consensus", "gold": "Gold accuracy",
                "position": "Picks the first-shown response", "ties": "Tie rate",
                "sources": "Labels per day, by source", "judge_by_day":
                "Judge agrees with people, by day judged", "judge_rules":
                "Judge agrees with people, per rule", "progress": "Items"}
    return render(request, "analytics/page.html", {"project": access.project, "a": a,
                                                    "figures": figures, "captions": captions,
                                                    "stale": stale})

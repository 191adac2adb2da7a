"""Generation runs: a model answers each prompt k times; the answers become items of the
next labeling round. Rounds tie it together: items, labels, snapshots and checkpoints.

The run's items are written invisible (``ready`` false) and published in one statement at
the end, as large imports are; a run that dies is started over from nothing.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from app.core import leases
from app.core.db import session_scope
from app.core.errors import BadRequest, NotFound
from app.core.jobs import enqueue_after_commit
from app.generation.generators import build_generator
from app.generation.schemas import GenerationIn
from app.items.chat import prompt_messages
from app.items.tags import write_item_tags
from app.models import (
    ExportSnapshot,
    GenerationRun,
    HumanLabel,
    Item,
    ModelCheckpoint,
    Project,
    Response,
    User,
)
from app.models.generation import GenerationStatus
from app.models.items import ResponseSource
from app.models.types import utcnow
from app.training.service import named_checkpoint

BATCH = 8


def start_generation(db: Session, *, project: Project, user: User | None,
                     data: GenerationIn) -> GenerationRun:
    model, checkpoint_id = data.model.strip() or "smollm2", None
    if data.provider == "openai":
        if not data.base_url or not data.model.strip():
            raise BadRequest("An OpenAI-compatible generator needs a base URL and a model.")
    elif (checkpoint := named_checkpoint(db, project_id=project.id, name=model)) is not None:
        if checkpoint.kind != "dpo":
            raise BadRequest("A reward model scores responses; generate with a policy "
                             "(a DPO checkpoint or a base model).")
        model, checkpoint_id = checkpoint.uri, checkpoint.id
    # Under the project's lock, so two runs started together get rounds of their own.
    db.execute(select(Project.id).where(Project.id == project.id)
               .with_for_update(key_share=True))
    latest = db.scalar(select(func.max(Item.round)).where(Item.project_id == project.id))
    if not latest:
        raise BadRequest("The project has no items whose prompts could be answered.")
    pending = db.scalar(select(func.max(GenerationRun.round)).where(
        GenerationRun.project_id == project.id,
        GenerationRun.status.in_([GenerationStatus.QUEUED, GenerationStatus.RUNNING,
                                  GenerationStatus.SUCCEEDED]))) or 0
    latest = max(latest, pending)
    run = GenerationRun(project_id=project.id, source_round=data.source_round,
                        round=latest + 1, k=data.k, provider=data.provider, model=model,
                        checkpoint_id=checkpoint_id, base_url=data.base_url,
                        api_key_env=data.api_key_env, sampling=data.sampling.model_dump(),
                        status=GenerationStatus.QUEUED,
                        created_by_id=user.id if user else None)
    db.add(run)
    db.flush()
    enqueue_after_commit(db, "generation.run", run.id)
    return run


def _sources(db: Session, run: GenerationRun) -> list[Item]:
    """One item per distinct prompt of the source round(s), oldest first."""
    query = select(Item).where(Item.project_id == run.project_id, Item.ready,
                               Item.round < run.round).order_by(Item.id)
    if run.source_round is not None:
        query = query.where(Item.round == run.source_round)
    seen: set[str] = set()
    out = []
    for item in db.scalars(query):
        key = repr(item.prompt)
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


def run_generation(*, run_id: int) -> bool:
    """Body of the ``generation.run`` task: idempotent, safe to run again after a crash.

    A copy claims the run with an owner token; a redelivered copy takes over only from one
    that has not reported for ``job_claim_stale_s``, and starts over from nothing; until
    then it returns False and the task looks again later. Each write first checks the
    owner under the run's row lock."""
    owner = leases.new_owner()
    with session_scope(write=True) as db:
        if not leases.claim(db, GenerationRun, run_id, owner):
            return not leases.held_elsewhere(db, GenerationRun, run_id)
    with session_scope(write=True) as db:
        leases.hold(db, GenerationRun, run_id, owner)
        run = db.get(GenerationRun, run_id)
        db.execute(delete(Item).where(Item.generation_run_id == run_id, ~Item.ready))
        sources = [(s.external_id, s.prompt, dict(s.meta or {})) for s in _sources(db, run)]
        run.total = len(sources)
        db.flush()
        db.expunge(run)
    generator = build_generator(provider=run.provider, model=run.model, base_url=run.base_url,
                                api_key_env=run.api_key_env, sampling=run.sampling)
    name = f"checkpoint:{run.checkpoint_id}" if run.checkpoint_id else run.model
    try:
        for start in range(0, len(sources), BATCH):
            batch = sources[start:start + BATCH]
            answers = []
            for n, (_, prompt, _) in enumerate(batch):
                answers.append(generator.generate(prompt_messages(prompt), run.k))
                with session_scope(write=True) as db:  # progress, and the heartbeat
                    leases.hold(db, GenerationRun, run_id, owner, done=start + n + 1)
            with session_scope(write=True) as db:
                leases.hold(db, GenerationRun, run_id, owner)
                for (external_id, prompt, meta), texts in zip(batch, answers, strict=True):
                    _write_item(db, run, external_id, prompt, meta, texts, name)
        with session_scope(write=True) as db:
            leases.hold(db, GenerationRun, run_id, owner,
                        status=GenerationStatus.SUCCEEDED, finished_at=utcnow())
            db.execute(update(Item).where(Item.generation_run_id == run_id)
                       .values(ready=True))
    except leases.Superseded:
        return True  # the copy that took over finishes it
    except Exception as exc:
        with session_scope(write=True) as db:
            if leases.still_ours(
                    db, GenerationRun, run_id, owner, status=GenerationStatus.FAILED,
                    finished_at=utcnow(),
                    error=f"generation failed: {type(exc).__name__}: {exc}"[:2000]):
                db.execute(delete(Item).where(Item.generation_run_id == run_id, ~Item.ready))
        raise
    return True


def _write_item(db: Session, run: GenerationRun, external_id: str, prompt,  # noqa: ANN001
                meta: dict, texts: list[str], model_name: str) -> None:
    texts = [t if t.strip() else "(the model wrote nothing)" for t in texts]
    item = Item(project_id=run.project_id, external_id=f"{external_id}~r{run.round}"[:200],
                prompt=prompt, round=run.round, ready=False, generation_run_id=run.id,
                meta={**meta, "round": run.round, "generated_from": external_id,
                      "generation_run": run.id}, consensus_stale=True)
    db.add(item)
    db.flush()
    write_item_tags(db, project_id=item.project_id, items=[(item.id, item.meta)])
    for position, text in enumerate(texts):
        db.add(Response(item_id=item.id, position=position, text=text,
                        model_name=model_name[:200], source=ResponseSource.GENERATED,
                        generation_run_id=run.id))


def get_generation(db: Session, *, project_id: int, run_id: int) -> GenerationRun:
    run = db.get(GenerationRun, run_id)
    if run is None or run.project_id != project_id:
        raise NotFound("No such generation run in this project.")
    return run


def list_generations(db: Session, *, project_id: int) -> list[GenerationRun]:
    return list(db.scalars(select(GenerationRun).where(GenerationRun.project_id == project_id)
                           .order_by(GenerationRun.id.desc())))


@dataclass
class Round:
    number: int
    items: int = 0
    labels: int = 0
    generation_run: GenerationRun | None = None
    snapshots: list[ExportSnapshot] | None = None
    checkpoints: list[ModelCheckpoint] | None = None


def rounds(db: Session, *, project_id: int) -> list[Round]:
    """Each round: its items and labels, the run that generated it, the snapshots that
    include it and the checkpoints trained on those."""
    out: dict[int, Round] = {}
    for number, n in db.execute(select(Item.round, func.count()).where(
            Item.project_id == project_id, Item.ready).group_by(Item.round)):
        out[number] = Round(number=number, items=n, snapshots=[], checkpoints=[])
    for number, n in db.execute(select(Item.round, func.count()).select_from(HumanLabel)
                                .join(Item, Item.id == HumanLabel.item_id)
                                .where(HumanLabel.project_id == project_id)
                                .group_by(Item.round)):
        if number in out:
            out[number].labels = n
    for run in list_generations(db, project_id=project_id):
        if run.round in out and run.status == GenerationStatus.SUCCEEDED:
            out[run.round].generation_run = run
    snapshots = list(db.scalars(select(ExportSnapshot).where(
        ExportSnapshot.project_id == project_id, ExportSnapshot.status == "succeeded")))
    by_snapshot: dict[int, list[ModelCheckpoint]] = defaultdict(list)
    for c in db.scalars(select(ModelCheckpoint).where(ModelCheckpoint.project_id == project_id)):
        if c.snapshot_id:
            by_snapshot[c.snapshot_id].append(c)
    for s in snapshots:
        wanted = s.filters.get("round")
        for number, r in out.items():
            if wanted is None or wanted == number:
                r.snapshots.append(s)
                r.checkpoints.extend(by_snapshot.get(s.id, []))
    return [out[n] for n in sorted(out)]

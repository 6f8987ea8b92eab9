"""Filter annotations: who marked which filter of which weights useful, useless or unsure.

The store is one SQLite database, `annotations.sqlite` in `convlens_home()`, shared by every app
session and CLI process. WAL mode lets readers read while a writer writes; a busy timeout makes
concurrent writers wait their turn instead of failing; every write is one `BEGIN IMMEDIATE`
transaction, so nothing is lost. A row is keyed by (model, weights_fingerprint, layer, filter,
author): setting it again replaces its label (and note) and records when, in `updated_at`
(ISO 8601, UTC). A filter's *latest label* is the label of its most recently updated row, whoever
wrote it. An imported `updated_at` may lie at most `CLOCK_SKEW` (5 minutes) after this machine's
clock: a row dated later (9999-12-31) would stay its filter's latest label whatever is marked
after it, so the import refuses it.

Listing, paging and counting happen in SQL (`AnnotationStore.overview`), so that a store of
200,000 rows is read in a fraction of a second (`bench/annotations.py`).

The model is the name `load_model` accepted (e.g. `run:RUN_DIR@STEP`), stored as given; the
weights fingerprint tells apart different weights under one name (see `convlens.weights.weights_fingerprint`).
"""

from __future__ import annotations

import csv
import getpass
import io
import json
import random
import re
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from convlens.access import whole_number
from convlens.paths import convlens_home, write_atomic
from convlens.runformat import RUN_PREFIX, parse_run_name, snapshot_dir, weight_steps
from convlens.weights import FINGERPRINT_DIGITS, SNIFF_BYTES, sniff

if TYPE_CHECKING:
    from convlens.graph import LayerGraph

DATABASE_NAME = "annotations.sqlite"
LABELS: tuple[str, ...] = ("useful", "useless", "unsure")
COLUMNS: tuple[str, ...] = (
    "model",
    "weights_fingerprint",
    "layer",
    "filter",
    "label",
    "note",
    "author",
    "updated_at",
)
REQUIRED_COLUMNS: tuple[str, ...] = ("model", "weights_fingerprint", "layer", "filter", "label")
EXPORT_FORMATS: tuple[str, ...] = ("csv", "json")
ANNOTATED_LAYER_TYPES: tuple[str, ...] = ("conv", "linear")
BUSY_TIMEOUT_S = 60.0
FALLBACK_AUTHOR = "anonymous"
# How far an imported updated_at may lie ahead of this machine's clock (another machine's clock).
CLOCK_SKEW = timedelta(minutes=5)
# SQLite's INTEGER is 64-bit: a larger filter number names no stored filter (and would raise
# OverflowError as a query parameter).
MAX_FILTER = 2**63 - 1
# The longest text field (a note, an author, a layer): a browser's every page of rows carries them.
MAX_FIELD_CHARS = 2_000
ROWS_PER_PAGE = 200

_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS annotations (
        model TEXT NOT NULL,
        weights_fingerprint TEXT NOT NULL,
        layer TEXT NOT NULL,
        filter INTEGER NOT NULL CHECK (filter >= 0),
        author TEXT NOT NULL,
        label TEXT NOT NULL CHECK (label IN ('useful', 'useless', 'unsure')),
        note TEXT NOT NULL DEFAULT '',
        updated_at TEXT NOT NULL,
        PRIMARY KEY (model, weights_fingerprint, layer, filter, author)
    )
    """,
    # The primary key serves the listing order, a model's rows and its models; these serve a
    # layer chosen across models, the counts per label (covering), and each filter's latest row
    # (newest first, then by author; covering for the useless filters).
    """
    CREATE INDEX IF NOT EXISTS annotations_by_layer
    ON annotations (layer, model, weights_fingerprint, filter, author)
    """,
    """
    CREATE INDEX IF NOT EXISTS annotations_labels ON annotations (model, layer, filter, label)
    """,
    """
    CREATE INDEX IF NOT EXISTS annotations_latest
    ON annotations (model, weights_fingerprint, layer, filter, updated_at DESC, author, label)
    """,
)
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM annotations"
_ORDER = " ORDER BY model, weights_fingerprint, layer, filter, author"
# A row is its filter's latest when no row of the same filter (and weights) is newer, or as new
# and by an author first by name. A seek in annotations_latest per row: no sort, no window.
_NO_NEWER = """
    NOT EXISTS (
        SELECT 1 FROM annotations AS newer
        WHERE newer.model = annotations.model
        AND newer.weights_fingerprint = annotations.weights_fingerprint
        AND newer.layer = annotations.layer AND newer.filter = annotations.filter
        AND (newer.updated_at > annotations.updated_at
             OR (newer.updated_at = annotations.updated_at AND newer.author < annotations.author))
    )
"""
# The distinct values of a column, one index seek each (SELECT DISTINCT reads every row).
_DISTINCT = """
    WITH RECURSIVE found(value) AS (
        SELECT MIN({column}) FROM annotations {where}
        UNION ALL
        SELECT (SELECT MIN({column}) FROM annotations {where_and} {column} > found.value)
        FROM found WHERE found.value IS NOT NULL
    )
    SELECT value FROM found WHERE value IS NOT NULL
"""
_SET = """
    INSERT INTO annotations (model, weights_fingerprint, layer, filter, author, label, note, updated_at)
    VALUES (:model, :weights_fingerprint, :layer, :filter, :author, :label, COALESCE(:note, ''), :updated_at)
    ON CONFLICT (model, weights_fingerprint, layer, filter, author) DO UPDATE SET
        label = excluded.label,
        note = COALESCE(:note, annotations.note),
        updated_at = excluded.updated_at
"""
# An imported row never overwrites a newer one, so merging an old export loses no recent label.
_IMPORT = """
    INSERT INTO annotations (model, weights_fingerprint, layer, filter, author, label, note, updated_at)
    VALUES (:model, :weights_fingerprint, :layer, :filter, :author, :label, :note, :updated_at)
    ON CONFLICT (model, weights_fingerprint, layer, filter, author) DO UPDATE SET
        label = excluded.label, note = excluded.note, updated_at = excluded.updated_at
    WHERE excluded.updated_at >= annotations.updated_at
"""


@dataclass(frozen=True)
class Annotation:
    """One author's label of one filter (or unit) of one layer of one model's weights."""

    model: str
    weights_fingerprint: str
    layer: str
    filter: int
    label: str
    note: str
    author: str
    updated_at: str

    def to_dict(self) -> dict[str, str | int]:
        """Return the row as exported and listed: the keys of `COLUMNS`, in that order."""
        return asdict(self)


@dataclass(frozen=True)
class RowError:
    """Why one row of an import is invalid; `row` counts data rows from 1, None is the whole file."""

    row: int | None
    reason: str

    def __str__(self) -> str:
        return f"row {self.row}: {self.reason}" if self.row is not None else self.reason


@dataclass(frozen=True)
class ImportReport:
    """What an import did: all valid rows written, or (with errors) nothing at all."""

    rows: int
    applied: int
    kept_newer: int
    errors: tuple[RowError, ...]

    @property
    def ok(self) -> bool:
        """Return whether every row was valid (and so the import was applied)."""
        return not self.errors


@dataclass(frozen=True)
class AnnotationOverview:
    """One page of the stored rows that match a model, layer and filter, with what the
    Annotations page shows around it: the choices of model and layer, and the rows per label."""

    rows: tuple[Annotation, ...]
    total: int
    counts: dict[str, int]
    page: int
    pages: int
    models: tuple[str, ...]
    layers: tuple[str, ...]


def counted(number: int, noun: str, plural: str | None = None) -> str:
    """Return "1 filter", "2 filters", "1,000 images": the number and its noun in the right number."""
    return f"{number:,} {noun if number == 1 else plural or noun + 's'}"


def default_author() -> str:
    """Return the login name of the user, or "anonymous" when the system has none."""
    try:
        return getpass.getuser() or FALLBACK_AUTHOR
    except (KeyError, OSError, ImportError):
        return FALLBACK_AUTHOR


def utc_now() -> str:
    """Return the current time as ISO 8601 in UTC, to the microsecond (the `updated_at` format)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def annotatable_layers(graph: LayerGraph) -> dict[str, int]:
    """Return each conv / linear chain node's id with its number of filters (or units), in chain order."""
    return {
        node.id: graph.layer(node.id).output_shape[0]
        for node in graph.chain
        if node.type in ANNOTATED_LAYER_TYPES and graph.layer(node.id).output_shape
    }


def check_filter(graph: LayerGraph, layer: str, filter_index: int, model: str) -> None:
    """Raise ValueError (one sentence) unless `layer` is a conv/linear chain node with that filter."""
    check_layer_filter(annotatable_layers(graph), layer, filter_index, model)


def check_layer_filter(
    layers: Mapping[str, int], layer: str, filter_index: int, model: str
) -> None:
    """Raise ValueError (one sentence) unless `layer` is one of `layers` (id: number of filters,
    as `annotatable_layers` gives them) and has that filter."""
    if layer not in layers:
        names = list(layers)
        shown = ", ".join(names[:12]) + (f" and {len(names) - 12} more" if len(names) > 12 else "")
        raise ValueError(
            f"'{layer}' is not a conv or linear layer of {model}; choose one of: {shown} "
            f"(see `convlens graph --model {model}`)"
        )
    if not 0 <= filter_index < layers[layer]:
        raise ValueError(
            f"{layer} of {model} has {counted(layers[layer], 'filter')} (0 to {layers[layer] - 1}); "
            f"it has no filter {filter_index}"
        )


@dataclass(frozen=True)
class WeightsFacts:
    """What `annotations set` checks a row against: the weights' fingerprint, the annotatable
    layers with their numbers of filters (in chain order), and whether the weights are trained."""

    fingerprint: str
    layers: dict[str, int]
    pretrained: bool


# Facts kept per weights file in FACTS_NAME under convlens_home(): the model is built and its
# weights read (seconds, and ~700 MB for VGG16) only when a file is new or has changed.
FACTS_NAME = "weights-facts.json"
FACTS_KEPT = 256


def weights_facts(name: str) -> WeightsFacts:
    """Return the facts of the weights that `resolve_model(name)` loads, from the cache in
    `convlens_home()` when their file is unchanged (same path, modification time and size);
    else load the model once, on the CPU, and keep its facts.

    `file:` models (the user's own code) are not kept: they are built each time.
    """
    from convlens import models

    files = _weights_files(name)
    key = _facts_key(name, files) if files is not None else None
    kept = _read_facts()
    if key is not None and isinstance(found := kept.get(key), dict):
        try:
            return WeightsFacts(
                str(found["fingerprint"]),
                {str(k): int(v) for k, v in found["layers"].items()},
                bool(found["pretrained"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            pass  # a damaged entry: computed again and replaced
    from convlens.graph import build_graph
    from convlens.weights import weights_fingerprint

    model = models.resolve_model(name, device="cpu")
    facts = WeightsFacts(
        weights_fingerprint(model.module),
        annotatable_layers(build_graph(model.module, model.input_size)),
        model.pretrained,
    )
    # kept only when the files did not change while they were read
    if key is not None and _facts_key(name, files) == key:
        kept.pop(key, None)
        kept[key] = asdict(facts)
        _write_facts(dict(list(kept.items())[-FACTS_KEPT:]))
    return facts


def _weights_files(name: str) -> list[Path] | None:
    """The files whose contents decide the weights (and layers) `resolve_model(name)` gives (none
    for untrained weights: seeded, the same each time); None when they cannot be told without
    building the model (`file:`, a bad name)."""
    from convlens import models

    try:
        if name.startswith(RUN_PREFIX):
            folder, step = parse_run_name(name)
            steps = weight_steps(folder)
            step = step if step is not None else (steps[-1] if steps else None)
            if step is None or step not in steps:
                return None
            return [folder / "manifest.json", snapshot_dir(folder, step) / "weights.safetensors"]
        if name.startswith("file:"):
            return None
        spec = models.model_spec(name)
        if (bundled := spec.bundled_weights()) is not None:
            return [bundled]
        cached = models.hub_cache_path(name)
        return [cached] if cached is not None and cached.is_file() else []
    except (models.ModelError, OSError, ValueError):
        return None  # loading the model says what is wrong


def _facts_key(name: str, files: list[Path]) -> str | None:
    """The cache key: the name, each file's resolved path, modification time and size, and the
    code that builds the model and finds its layers (versions, and the sources of an edited
    checkout); None when a file cannot be read."""
    import torch
    import torchvision

    from convlens import __version__

    here = Path(__file__).resolve().parent
    code = [here / f"{module}.py" for module in ("models", "smallnets", "graph", "weights")]
    try:
        stamps = []
        for path in [*files, *code]:
            stat = path.stat()
            stamps.append([str(path.resolve()), stat.st_mtime_ns, stat.st_size])
    except OSError:
        return None
    return json.dumps([name, stamps, __version__, torch.__version__, torchvision.__version__])


def _read_facts() -> dict[str, object]:
    try:
        kept = json.loads((convlens_home() / FACTS_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return kept if isinstance(kept, dict) else {}


def _write_facts(kept: Mapping[str, object]) -> None:
    """Write the cache atomically (a temporary file renamed over it): another process reads the
    old file or the new one, never half of one. A write that fails only loses the cache."""
    path = convlens_home() / FACTS_NAME
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(kept, indent=1))
    except OSError:
        pass


class AnnotationStore:
    """The annotation database at `path` (default: `annotations.sqlite` in `convlens_home()`).

    Every call opens and closes its own connection, so one store may serve many threads.
    Reading a store that does not exist yet finds nothing and creates nothing.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else convlens_home() / DATABASE_NAME

    def set_annotation(
        self,
        model: str,
        weights_fingerprint: str,
        layer: str,
        filter: int,
        label: str,
        note: str | None = None,
        author: str | None = None,
    ) -> Annotation:
        """Store (or replace) `author`'s label of one filter and return the stored row.

        `author` None is the login name (the CLI's user); an empty author is refused, so that a
        browser's mark never falls back to the server's login name. A `note` of None keeps the
        note already stored. Raises ValueError when a field is invalid.
        """
        if author is not None and not author.strip():
            raise ValueError("the author is empty; give a name")
        fields = {
            "model": model,
            "weights_fingerprint": weights_fingerprint,
            "layer": layer,
            "filter": filter,
            "label": label,
            "note": note,
            "author": author if author is not None else default_author(),
        }
        annotation, reasons = _parse_row(fields, default_author(), utc_now())
        if annotation is None:
            raise ValueError("; ".join(reasons))
        values = {**annotation.to_dict(), "note": note}
        with self._write() as connection:
            connection.execute(_SET, values)
            row = connection.execute(
                f"{_SELECT} WHERE model = ? AND weights_fingerprint = ? AND layer = ? "
                "AND filter = ? AND author = ?",
                (
                    annotation.model,
                    annotation.weights_fingerprint,
                    annotation.layer,
                    annotation.filter,
                    annotation.author,
                ),
            ).fetchone()
        return Annotation(*row)

    def delete_annotation(
        self,
        model: str,
        weights_fingerprint: str,
        layer: str,
        filter: int,
        author: str | None = None,
    ) -> bool:
        """Delete `author`'s (default: the login name's) label of one filter; return whether one existed."""
        if not self.path.exists():
            return False
        with self._write() as connection:
            cursor = connection.execute(
                "DELETE FROM annotations WHERE model = ? AND weights_fingerprint = ? AND layer = ? "
                "AND filter = ? AND author = ?",
                (
                    model,
                    weights_fingerprint,
                    layer,
                    filter,
                    author if author is not None else default_author(),
                ),
            )
            return cursor.rowcount > 0

    def list_annotations(
        self,
        model: str | None = None,
        layer: str | None = None,
        fingerprint: str | None = None,
        author: str | None = None,
        filter: int | None = None,
    ) -> list[Annotation]:
        """Return the stored rows that match every filter given, by model, weights, layer, filter, author."""
        where, parameters = _conditions(
            model=model, layer=layer, weights_fingerprint=fingerprint, author=author, filter=filter
        )
        if where is None:
            return []
        return [Annotation(*row) for row in self._read(_SELECT + where + _ORDER, parameters)]

    def overview(
        self,
        model: str | None = None,
        layer: str | None = None,
        filter: int | None = None,
        page: int = 1,
        per_page: int = ROWS_PER_PAGE,
    ) -> AnnotationOverview:
        """Return page `page` (from 1; a page past the last is the last) of the rows that match
        `model`, `layer` and `filter` (None: any), with their number per label, and the stored
        models and the layers of `model` to choose from; read in one transaction."""
        with self._reading() as connection:
            if connection is None:
                return AnnotationOverview((), 0, dict.fromkeys(LABELS, 0), 1, 1, (), ())
            models = _distinct(connection, "model")
            layers = _distinct(connection, "layer", model=model)
            where, parameters = _conditions(model=model, layer=layer, filter=filter)
            counts = dict.fromkeys(LABELS, 0)
            if where is not None:
                counts.update(
                    connection.execute(
                        f"SELECT label, COUNT(*) FROM annotations{where} GROUP BY label",
                        parameters,
                    ).fetchall()
                )
            total = sum(counts.values())
            pages = max(1, -(-total // per_page))
            page = min(max(page, 1), pages)
            rows: list[tuple] = []
            if total:
                rows = connection.execute(
                    f"{_SELECT}{where}{_ORDER} LIMIT :limit OFFSET :offset",
                    {**parameters, "limit": per_page, "offset": (page - 1) * per_page},
                ).fetchall()
        return AnnotationOverview(
            tuple(Annotation(*row) for row in rows),
            total,
            counts,
            page,
            pages,
            models,
            layers,
        )

    def latest_annotations(
        self,
        model: str,
        fingerprint: str,
        layer: str | None = None,
        author: str | None = None,
    ) -> dict[tuple[str, int], Annotation]:
        """Return each annotated filter's most recently updated row, keyed by (layer, filter).

        Across all authors, or only `author`'s rows when given; a tie goes to the first author by name.
        """
        where, parameters = _conditions(
            model=model, weights_fingerprint=fingerprint, layer=layer, author=author
        )
        # one author has one row per filter: each of them is that author's latest
        latest = "" if author is not None else f" AND {_NO_NEWER}"
        sql = f"{_SELECT}{where}{latest} ORDER BY layer, filter"
        return {(row[2], row[3]): Annotation(*row) for row in self._read(sql, parameters)}

    def latest_labels(
        self,
        model: str,
        fingerprint: str,
        layer: str | None = None,
        author: str | None = None,
    ) -> dict[tuple[str, int], str]:
        """Return each annotated filter's latest label, keyed by (layer, filter)."""
        latest = self.latest_annotations(model, fingerprint, layer=layer, author=author)
        return {key: row.label for key, row in latest.items()}

    def label_counts(
        self,
        model: str,
        fingerprint: str,
        layer: str | None = None,
        author: str | None = None,
    ) -> dict[str, int]:
        """Return how many filters have each latest label (every label of `LABELS`, zeros included)."""
        counts = Counter(
            self.latest_labels(model, fingerprint, layer=layer, author=author).values()
        )
        return {label: counts[label] for label in LABELS}

    def useless_filters(
        self, model: str, fingerprint: str, author: str | None = None
    ) -> dict[str, list[int]]:
        """Return the filters whose latest label is "useless", as sorted indices per layer."""
        where, parameters = _conditions(
            model=model, weights_fingerprint=fingerprint, author=author, label="useless"
        )
        latest = "" if author is not None else f" AND {_NO_NEWER}"
        sql = f"SELECT layer, filter FROM annotations{where}{latest} ORDER BY layer, filter"
        useless: dict[str, list[int]] = {}
        for layer, index in self._read(sql, parameters):
            useless.setdefault(layer, []).append(index)
        return useless

    def export_annotations(self, format: str = "csv", model: str | None = None) -> str:
        """Return every row (or `model`'s) as CSV with a header row, or as a JSON list of objects."""
        rows = [row.to_dict() for row in self.list_annotations(model=model)]
        if format == "json":
            return json.dumps(rows, indent=2, ensure_ascii=False) + "\n"
        if format != "csv":
            raise ValueError(f"unknown export format '{format}'; use csv or json")
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return out.getvalue()

    def import_annotations(
        self, source: Path | str, default_author_name: str | None = None
    ) -> ImportReport:
        """Check every row of an export, then write them all or none; return what was done.

        `source` is a file when it is a Path (ValueError if it cannot be read), and CSV or JSON
        text when it is a str (JSON when it starts with "[" or "{", or the file ends in .json);
        text is never taken for a file name. Required columns: model, weights_fingerprint, layer, filter, label; a missing note is
        empty, a missing author is `default_author_name` (default: the login name) and a missing
        updated_at is now. A row older than the stored row with the same key does not replace it.
        """
        text, format = _read_source(source)
        raw_rows, errors = _split_rows(text, format)
        if errors:
            # A problem of the whole file (not JSON, a column missing from the header) would
            # repeat in every row; report it once.
            return ImportReport(len(raw_rows), 0, 0, tuple(errors))
        author = default_author_name or default_author()
        now = utc_now()
        rows: list[Annotation] = []
        for number, raw in enumerate(raw_rows, start=1):
            annotation, reasons = _parse_row(raw, author, now)
            if annotation is None:
                errors.extend(RowError(number, reason) for reason in reasons)
            else:
                rows.append(annotation)
        if errors:
            return ImportReport(len(raw_rows), 0, 0, tuple(errors))
        applied = 0
        with self._write() as connection:
            for row in rows:
                applied += connection.execute(_IMPORT, row.to_dict()).rowcount
        return ImportReport(len(rows), applied, len(rows) - applied, ())

    def _connect(self) -> sqlite3.Connection:
        # isolation_level None: transactions are begun and ended explicitly, below.
        return sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """Yield a connection inside one immediate transaction; commit at the end, roll back on error."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = self._connect()
        try:
            _use_write_ahead_log(connection)
            # With WAL, NORMAL saves an fsync per commit and never corrupts the database; only
            # the last commits before a power cut could be lost.
            connection.execute("PRAGMA synchronous = NORMAL")
            # IMMEDIATE takes the write lock at once (waiting up to the busy timeout), so a
            # transaction never has to upgrade a read lock, which SQLite could refuse at once.
            connection.execute("BEGIN IMMEDIATE")
            try:
                for statement in _SCHEMA:
                    connection.execute(statement)
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
        finally:
            connection.close()

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection | None]:
        """Yield a connection whose reads see one state of the store, or None when the store
        (or its table) does not exist yet; creates nothing."""
        if not self.path.exists():
            yield None
            return
        connection = self._connect()
        try:
            connection.execute("BEGIN")  # a deferred transaction: one snapshot for every read
            try:
                connection.execute("SELECT 1 FROM annotations LIMIT 0")
            except sqlite3.OperationalError as error:
                if "no such table" not in str(error):
                    raise
                yield None
                return
            yield connection
        finally:
            connection.close()

    def _read(self, sql: str, parameters: Mapping[str, object]) -> list[tuple]:
        with self._reading() as connection:
            return [] if connection is None else connection.execute(sql, parameters).fetchall()


def _distinct(connection: sqlite3.Connection, column: str, **values: object) -> tuple[str, ...]:
    """Return the sorted distinct values of `column` in the rows that match `values`."""
    where, parameters = _conditions(**values)
    sql = _DISTINCT.format(
        column=column, where=where, where_and=f"{where} AND" if where else " WHERE"
    )
    return tuple(row[0] for row in connection.execute(sql, parameters))


def _conditions(**values: object) -> tuple[str | None, dict[str, object]]:
    """Return the WHERE clause (with its leading space; "" for none) that matches the columns
    given (not None) and its parameters; None when a filter number cannot be stored (no row
    has it)."""
    given = {column: value for column, value in values.items() if value is not None}
    number = given.get("filter")
    if isinstance(number, int) and not 0 <= number <= MAX_FILTER:
        return None, {}
    where = " AND ".join(f"{column} = :{column}" for column in given)
    return (f" WHERE {where}" if where else ""), given


def _use_write_ahead_log(connection: sqlite3.Connection) -> None:
    """Switch the database to WAL mode once; the mode is stored in the file and kept from then on.

    Switching needs an exclusive lock and SQLite answers "database is locked" at once, without
    waiting for the busy timeout, when another process holds any lock (as when several processes
    create the store together); so retry until the busy timeout has passed.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            if connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                return
            connection.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.01 + random.random() * 0.04)


def decode_export(data: bytes, name: str) -> str:
    """Return the text of an export file's bytes; ValueError, in one line that says what the
    file is instead (an image, a binary file), when they are not UTF-8 text."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        kind = sniff(data[:SNIFF_BYTES], len(data))
    what = kind.noun if kind.kind == "image" else "a binary file"
    raise ValueError(f"{name} is not a CSV or JSON export of annotations: it is {what}")


def _read_source(source: Path | str) -> tuple[str, str | None]:
    """Return the text to import and its format when a file suffix says so (else None: sniff)."""
    if isinstance(source, str):
        return source, None
    path = source
    try:
        text = decode_export(path.read_bytes(), str(path))
    except FileNotFoundError:
        raise ValueError(f"no such file: {path}") from None
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error.strerror or error}") from error
    suffix = path.suffix.lower().lstrip(".")
    return text, suffix if suffix in EXPORT_FORMATS else None


def _split_rows(text: str, format: str | None) -> tuple[list[Mapping[str, object]], list[RowError]]:
    """Return the raw rows of CSV or JSON text, and the errors that concern the whole file."""
    text = text.lstrip("\ufeff")
    if format is None:
        format = "json" if text.lstrip()[:1] in ("[", "{") else "csv"
    return _split_json(text) if format == "json" else _split_csv(text)


def _split_json(text: str) -> tuple[list[Mapping[str, object]], list[RowError]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        return [], [RowError(None, f"not JSON ({error})")]
    except (ValueError, RecursionError):  # a number of thousands of digits, lists nested deeply
        return [], [RowError(None, "not JSON that ConvLens reads (a number or nesting too large)")]
    if not isinstance(data, list):
        return [], [RowError(None, "a JSON import is a list of rows (objects)")]
    return data, []


def _split_csv(text: str) -> tuple[list[Mapping[str, object]], list[RowError]]:
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    missing = [column for column in REQUIRED_COLUMNS if column not in header]
    unknown = [column for column in header if column not in COLUMNS]
    problems = []
    if missing:
        problems.append(f"the CSV header lacks the column(s) {', '.join(missing)}")
    if unknown:
        problems.append(f"the CSV header has unknown column(s) {', '.join(map(repr, unknown))}")
    try:
        rows = list(reader)
    except csv.Error as error:
        problems.append(f"not CSV ({error})")
        rows = []
    return rows, [RowError(None, problem) for problem in problems]


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _text(raw: Mapping[str, object], column: str, reasons: list[str]) -> str | None:
    """Return a non-empty text field, or None after noting why in `reasons`."""
    value = raw.get(column)
    if value is None or (isinstance(value, str) and not value.strip()):
        reasons.append(f"{column} is missing")
        return None
    if not isinstance(value, str):
        reasons.append(f"{column} must be text, not {_shown(value)}")
        return None
    if len(value) > MAX_FIELD_CHARS:
        reasons.append(f"{column} is longer than {MAX_FIELD_CHARS:,} characters")
        return None
    return value


def _parse_row(
    raw: object, default_author_name: str, now: str
) -> tuple[Annotation | None, list[str]]:
    """Return the annotation a raw row describes, or None and every reason it is invalid."""
    if not isinstance(raw, Mapping):
        return None, [f"a row must be an object with the columns {', '.join(COLUMNS)}"]
    reasons = [
        "more fields than the header has" if key is None else f"unknown column {_shown(key)}"
        for key in raw
        if key not in COLUMNS
    ]
    model = _text(raw, "model", reasons)
    layer = _text(raw, "layer", reasons)
    fingerprint = _text(raw, "weights_fingerprint", reasons)
    if fingerprint is not None and not re.fullmatch(
        f"[0-9a-f]{{{FINGERPRINT_DIGITS}}}", fingerprint.strip().lower()
    ):
        reasons.append(f"weights_fingerprint must be 16 hex digits, not {_shown(fingerprint)}")
    filter_index = _filter_index(raw.get("filter"), reasons)
    label = raw.get("label")
    if label is None or label == "":
        reasons.append("label is missing")
    elif not isinstance(label, str) or label.strip().lower() not in LABELS:
        reasons.append(f"label must be one of {', '.join(LABELS)}, not {_shown(label)}")
    note = raw.get("note")
    author = raw.get("author")
    for column, value in (("note", note), ("author", author)):
        if value is not None and not isinstance(value, str):
            reasons.append(f"{column} must be text, not {_shown(value)}")
        elif value is not None and len(value) > MAX_FIELD_CHARS:
            reasons.append(f"{column} is longer than {MAX_FIELD_CHARS:,} characters")
    updated_at = _timestamp(raw.get("updated_at"), now, reasons)
    if reasons:
        return None, reasons
    return (
        Annotation(
            model=str(model),
            weights_fingerprint=str(fingerprint).strip().lower(),
            layer=str(layer),
            filter=int(filter_index or 0),
            label=str(label).strip().lower(),
            note=str(note or ""),
            author=str(author).strip() if author and str(author).strip() else default_author_name,
            updated_at=str(updated_at),
        ),
        [],
    )


def _filter_index(value: object, reasons: list[str]) -> int | None:
    if value is None or value == "":
        reasons.append("filter is missing")
        return None
    number = whole_number(value) if isinstance(value, str) else value
    if isinstance(number, int) and not isinstance(number, bool) and 0 <= number <= MAX_FILTER:
        return number
    reasons.append(f"filter must be a whole number from 0 to {MAX_FILTER}, not {_shown(value)}")
    return None


def _timestamp(value: object, now: str, reasons: list[str]) -> str | None:
    """Return `value` as canonical ISO 8601 UTC (a time without zone is taken as UTC), or `now`."""
    if value is None or value == "":
        return now
    try:
        if not isinstance(value, str):
            raise ValueError
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        reasons.append(f"updated_at must be an ISO 8601 time, not {_shown(value)}")
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if moment > datetime.fromisoformat(now) + CLOCK_SKEW:
        minutes = int(CLOCK_SKEW.total_seconds() // 60)
        reasons.append(
            f"updated_at {_shown(value)} is later than now ({now[:16].replace('T', ' ')} UTC "
            f"here; another clock may be at most {minutes} minutes ahead)"
        )
        return None
    try:
        return moment.astimezone(UTC).isoformat(timespec="microseconds")
    except OverflowError:  # 0001-01-01T00:00+05:00 is a time before year 1 in UTC
        reasons.append(f"updated_at {_shown(value)} is out of range")
        return None

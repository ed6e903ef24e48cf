"""The documentation's generated reference lists what the code defines (docs/gen_reference.py).

The config tree and the run file's tables are walked here independently of the generator, so a key
or column the generator skipped, or a page that lost its generated part, fails the test.
"""

from __future__ import annotations

import importlib.util
import typing
from pathlib import Path
from types import ModuleType

from pydantic import BaseModel

from mpimarl.config import RunConfig
from mpimarl.record.schema import TABLES

REPO = Path(__file__).resolve().parent.parent


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_reference", REPO / "docs" / "gen_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _leaf_fields(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str]]:
    """(dotted key, description) of every leaf field; list items of sections as `key[].field`."""
    out: list[tuple[str, str]] = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        item = typing.get_args(annotation)[0] if typing.get_origin(annotation) is list else None
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            out += _leaf_fields(annotation, f"{prefix}{name}.")
        elif isinstance(item, type) and issubclass(item, BaseModel):
            out += _leaf_fields(item, f"{prefix}{name}[].")
        else:
            out.append((f"{prefix}{name}", field.description or ""))
    return out


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def test_config_reference_lists_every_config_field_with_its_description() -> None:
    page = _generator().config_reference()
    fields = _leaf_fields(RunConfig)
    assert len(fields) > 80  # the walk reached the sections, not only the top level
    for key, description in fields:
        assert f"| `{key}` |" in page, f"config reference lacks {key}"
        assert description, f"{key} has no description in mpimarl/config.py"
        assert _cell(description) in page, f"config reference lacks the description of {key}"


def test_run_file_page_lists_every_table_and_column() -> None:
    gen = _generator()
    tables = gen.run_file_tables()
    for table, columns in TABLES.items():
        assert f"### `{table}`" in tables
        for column in columns:
            assert f"| `{column.name}` |" in tables and _cell(column.description) in tables, (table, column.name)
    # The hand-written page carries the marker the build replaces with these tables.
    assert gen.RUN_FILE_MARKER in (REPO / "docs" / "run_file.md").read_text(encoding="utf-8")


def test_site_config_runs_the_generator_and_names_the_generated_pages() -> None:
    site = (REPO / "mkdocs.yml").read_text(encoding="utf-8")
    gen = _generator()
    assert "- docs/gen_reference.py" in site
    assert gen.CONFIG_PAGE in site and f"{gen.BENCHMARKS_DIR}/index.md" in site
    pages = gen.generated_pages()
    assert gen.CONFIG_PAGE in pages and f"{gen.BENCHMARKS_DIR}/index.md" in pages
    # Every benchmark result table the pages link to is part of the site.
    assert all(f"{gen.BENCHMARKS_DIR}/{p.relative_to(REPO / 'benchmarks').as_posix()}" in pages
               for p in (REPO / "benchmarks" / "results").rglob("*.md"))

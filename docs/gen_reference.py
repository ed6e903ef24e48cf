"""Generate the documentation's reference parts from the code, so they cannot drift from it.

- The config reference (every key of :class:`mpimarl.config.RunConfig`, its type, default and
  description) is generated from ``mpimarl/config.py``.
- The run file's tables and columns are generated from ``mpimarl/record/schema.py``.
- The benchmark pages are ``benchmarks/README.md`` and ``benchmarks/results/**.md``, copied in.

Used as a MkDocs hook (``hooks:`` in ``mkdocs.yml``): ``on_files`` adds the generated pages to the
site, ``on_page_markdown`` fills the ``<!-- mpimarl:... -->`` markers of hand-written pages.
Run as a script, it writes the generated pages to a folder instead::

    python docs/gen_reference.py --out /tmp/reference
"""

from __future__ import annotations

import argparse
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from mpimarl.config import RunConfig
from mpimarl.record import schema

REPO = Path(__file__).resolve().parent.parent
"""The repository root (this file lives in ``docs/``)."""

CONFIG_PAGE = "reference/config.md"
"""Site path of the generated config reference."""

BENCHMARKS_DIR = "benchmarks"
"""Site folder of the benchmark pages (``benchmarks/README.md`` becomes its index)."""

RUN_FILE_MARKER = "<!-- mpimarl:run-file-tables -->"
"""Marker in a hand-written page replaced by the run file's tables and columns."""


# ---------------------------------------------------------------- config reference --


def _type_name(annotation: Any) -> str:
    """A short, readable name for a field's type (``int | dict[str, int]``, ``'sync' | 'async'``)."""
    if annotation is type(None):
        return "None"
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join(_type_name(a) for a in args)}]" if args else name
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _default(field: FieldInfo) -> str:
    """The default of a field as YAML would read it, or 'required'."""
    if field.default_factory is not None:
        value = field.default_factory()
        if isinstance(value, BaseModel):
            return "(section)"
        return repr(value) if value not in ([], {}) else str(value)
    if field.default is PydanticUndefined:
        return "required"
    if field.default is None:
        return "None"
    return repr(field.default)


def _section_model(annotation: Any) -> tuple[type[BaseModel], bool] | None:
    """The config section a field holds (and whether it is a list of them), else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation)
        if isinstance(item, type) and issubclass(item, BaseModel):
            return item, True
    return None


def _cell(text: str) -> str:
    """Text made safe for one Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def config_fields(model: type[BaseModel] = RunConfig, prefix: str = "") -> list[str]:
    """Every leaf key of the config tree as a dotted path (``ppo.learning_rate``, ``task.roles[].name``)."""
    keys: list[str] = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        section = _section_model(field.annotation)
        if section is None:
            keys.append(path)
        else:
            sub, is_list = section
            keys.extend(config_fields(sub, f"{path}[]." if is_list else f"{path}."))
    return keys


def _config_sections(model: type[BaseModel], prefix: str, title: str,
                     out: list[tuple[str, type[BaseModel], list[tuple[str, FieldInfo]]]]) -> None:
    """Collect (title, model, leaf fields) for `model` and, after it, each nested section."""
    leaves: list[tuple[str, FieldInfo]] = []
    nested: list[tuple[str, type[BaseModel], bool]] = []
    for name, field in model.model_fields.items():
        section = _section_model(field.annotation)
        if section is None:
            leaves.append((f"{prefix}{name}", field))
        else:
            nested.append((f"{prefix}{name}", *section))
    out.append((title, model, leaves))
    for path, sub, is_list in nested:
        _config_sections(sub, f"{path}[]." if is_list else f"{path}.", f"`{path}`" + (" (a list)" if is_list else ""),
                         out)


def config_reference() -> str:
    """The config reference page: one table per section, every key with type, default and description."""
    sections: list[tuple[str, type[BaseModel], list[tuple[str, FieldInfo]]]] = []
    _config_sections(RunConfig, "", "Top level", sections)
    lines = [
        "# Config reference",
        "",
        "Generated from `mpimarl/config.py` when the site is built (`docs/gen_reference.py`), so it",
        "lists exactly the keys `load_config` accepts. A key not listed here is an error, with the",
        "nearest valid key suggested. Override any key on the command line as `key.path=value`",
        "(values parsed as YAML). See [Configs](../configs.md) for how the sections fit together.",
        "",
    ]
    for title, model, leaves in sections:
        lines += [f"## {title}", ""]
        doc = (model.__doc__ or "").strip()
        if doc:
            lines += [" ".join(doc.split()), ""]
        if not leaves:
            continue
        lines += ["| key | type | default | description |", "|---|---|---|---|"]
        for path, field in leaves:
            lines.append(
                f"| `{path}` | `{_cell(_type_name(field.annotation))}` | `{_cell(_default(field))}` "
                f"| {_cell(field.description or '')} |"
            )
        lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------- run file columns --


def _kind(column: schema.Column) -> str:
    """A column's storage kind in words."""
    if column.is_text:
        return "text"
    if column.is_float:
        return "float (NaN: missing)"
    return f"int ({column.dtype.name})"


def run_file_tables() -> str:
    """Every table of the run file with its columns, types and descriptions (from the schema)."""
    lines = [
        f"Schema version {schema.SCHEMA_VERSION} (file attribute `schema_version`; `format` is "
        f"`{schema.FORMAT_NAME}`). Generated from `mpimarl/record/schema.py`.",
        "",
    ]
    for table, cols in schema.TABLES.items():
        later = set(schema.LATER_COLUMNS.get(table, ()))
        lines += [f"### `{table}`", "", f"`/{schema.TABLES_GROUP}/{table}`, {len(cols)} columns.", ""]
        lines += ["| column | type | description |", "|---|---|---|"]
        for c in cols:
            note = " (added later: NaN in older files)" if c.name in later else ""
            lines.append(f"| `{c.name}` | {_kind(c)} | {_cell(c.description)}{note} |")
        lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------- benchmark pages --


def benchmark_pages() -> dict[str, str]:
    """Site path -> Markdown of the benchmark pages: ``benchmarks/README.md`` as the folder's index
    and every Markdown table under ``benchmarks/results/``."""
    root = REPO / "benchmarks"
    pages = {f"{BENCHMARKS_DIR}/index.md": (root / "README.md").read_text(encoding="utf-8")}
    for path in sorted((root / "results").rglob("*.md")):
        text = _fence_plain_table(path.read_text(encoding="utf-8"))
        pages[f"{BENCHMARKS_DIR}/{path.relative_to(root).as_posix()}"] = text
    return pages


def benchmark_figures() -> dict[str, Path]:
    """Site path -> file of every PNG figure under ``benchmarks/results/``."""
    root = REPO / "benchmarks"
    return {f"{BENCHMARKS_DIR}/{path.relative_to(root).as_posix()}": path
            for path in sorted((root / "results").rglob("*.png"))}


def _fence_plain_table(text: str) -> str:
    """A results file whose table is pandas' fixed-width text (no Markdown table) with that table in a
    code block, so its columns stay aligned on the site; Markdown tables are left as they are."""
    if any(line.startswith("|") for line in text.splitlines()):
        return text
    blocks = text.split("\n\n")
    for i, block in enumerate(blocks):
        if block.strip() and not block.lstrip().startswith("#"):
            blocks[i] = f"```text\n{block.strip(chr(10))}\n```"
            break
    return "\n\n".join(blocks)


def generated_pages() -> dict[str, str]:
    """Every page the site gets from the code rather than from ``docs/``: site path -> Markdown."""
    return {CONFIG_PAGE: config_reference(), **benchmark_pages()}


# -------------------------------------------------------------------- MkDocs hook --


def on_files(files: Any, config: Any) -> Any:
    """MkDocs hook: add the generated pages to the site's files."""
    from mkdocs.structure.files import File

    for uri, text in generated_pages().items():
        existing = files.get_file_from_path(uri)
        if existing is not None:
            files.remove(existing)
        files.append(File.generated(config, uri, content=text))
    for uri, path in benchmark_figures().items():  # the figures beside the tables, for pages that show them
        if files.get_file_from_path(uri) is None:
            files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """MkDocs hook: fill the run-file marker with the generated tables."""
    if RUN_FILE_MARKER in markdown:
        markdown = markdown.replace(RUN_FILE_MARKER, run_file_tables())
    return markdown


def main(argv: list[str] | None = None) -> int:
    """Write the generated pages (and the run-file tables) under ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write the generated pages into")
    args = parser.parse_args(argv)
    pages = {**generated_pages(), "reference/run_file_tables.md": run_file_tables()}
    for uri, text in pages.items():
        target = args.out / uri
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    print(f"wrote {len(pages)} pages under {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

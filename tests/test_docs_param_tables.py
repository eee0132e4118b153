"""The parameter tables of docs/methods.md and docs/samplers.md state the code's defaults.

A meta-test in the style of datasette's documentation tests: every row of every parameter
table (a table whose header starts with ``parameter``) is parsed, matched to the built-in
plugins it is about, and its values compared with ``Param.for_budget`` at each budget. A row
that cannot be parsed or matched fails; nothing is skipped silently. In the other direction,
every declared parameter of every built-in method (sampler) must appear in a row of
docs/methods.md (docs/samplers.md) that applies to it.

The table format:

- the parameter cell is one or more parameter names in backticks, optionally followed by the
  plugins the row is limited to, ``(`pcd`)`` or ``(`ssm`, `ssm_vr`)``; without that the row
  is about every plugin of its section: the plugins named in backticks in the section's
  heading (``## Contrastive divergence: `cd`, `pcd```), or every built-in plugin of the
  page's kind for the sections in ``ALL_PLUGIN_SECTIONS``;
- the value cell is a value, or a value followed by exceptions,
  ``30 / 400 / 20000 (`pcd`: 30 / 600 / 20000; `fce`: 1)``, or values per plugin,
  ``` `mh` 10 / 200 / 2000; `ula`, `mala` 10 / 100 / 1000 ```;
- a value is one scalar when it is the same at every budget, else ``smoke / quick / full``;
  a scalar is a number, ``true`` / ``false``, or a string in backticks.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ebmbench.plugins import get_plugin_manager

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
BUDGETS = ("smoke", "quick", "full")

# The page whose parameter tables document each plugin kind.
PAGES = {"methods.md": "method", "samplers.md": "sampler"}

# Sections whose tables are about every built-in plugin of the page's kind (the page's
# introduction, before its first ``##`` heading, is the section of its ``#`` heading).
ALL_PLUGIN_SECTIONS = {
    ("methods.md", "Training methods"),
    ("samplers.md", "Parameters"),
}

# Rows whose value cell is not a value (a description, a reference to another row), as
# (page, parameter cell): reason. Such a row is not compared; its parameters still count as
# documented.
NON_VALUE_ROWS: dict[tuple[str, str], str] = {}

# Declared parameters that need no row, as (kind, plugin, parameter): reason.
UNDOCUMENTED: dict[tuple[str, str, str], str] = {}


@dataclass(frozen=True)
class Row:
    page: str
    line: int  # 1-based line number in the page
    section: str  # the text of the heading the table is under
    cells: tuple[str, ...]
    text: str

    @property
    def id(self) -> str:
        name = self.cells[0].replace("`", "") if self.cells else "?"
        return f"{self.page}:{self.line}:{name}"


@dataclass(frozen=True)
class Table:
    page: str
    line: int
    section: str
    header: tuple[str, ...]
    separator_ok: bool
    rows: tuple[Row, ...]


def split_cells(line: str) -> tuple[str, ...]:
    body = line.strip()
    body = body[1:] if body.startswith("|") else body
    body = body[:-1] if body.endswith("|") else body
    return tuple(cell.strip() for cell in body.split("|"))


def is_parameter_table(header: tuple[str, ...]) -> bool:
    # The second test catches a parameter table whose first header cell was renamed.
    return header[0] == "parameter" or any("smoke / quick / full" in cell for cell in header)


def parameter_tables(page: str) -> list[Table]:
    """Every parameter table of ``docs/<page>``, with the heading it is under."""
    lines = (DOCS / page).read_text(encoding="utf-8").splitlines()
    tables: list[Table] = []
    section = ""
    in_fence = False
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        elif not in_fence and re.match(r"#{1,2} ", line):
            # ``###`` subsections stay in their ``##`` section.
            section = line.lstrip("#").strip()
        elif not in_fence and line.startswith("|"):
            start = i
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append(i)
                i += 1
            header = split_cells(lines[block[0]])
            if is_parameter_table(header):
                separator_ok = len(block) > 1 and bool(
                    re.fullmatch(r"\|?(\s*:?-{3,}:?\s*\|)*\s*:?-{3,}:?\s*\|?", lines[block[1]].strip())
                )
                rows = tuple(
                    Row(page, j + 1, section, split_cells(lines[j]), lines[j]) for j in block[2:]
                )
                tables.append(Table(page, start + 1, section, header, separator_ok, rows))
            continue
        i += 1
    return tables


ALL_TABLES = [table for page in PAGES for table in parameter_tables(page)]
ALL_ROWS = [row for table in ALL_TABLES for row in table.rows]


@functools.cache
def builtin(kind: str) -> dict[str, dict[str, Any]]:
    """{plugin name: its declared ``params``} for the built-in plugins of ``kind``."""
    return {
        info.name: dict(info.cls.params)
        for info in get_plugin_manager().registry(kind)
        if info.source == "ebmbench"
    }


# -- parsing -------------------------------------------------------------------------------

NAMES = r"`\w+`(?:\s*,\s*`\w+`)*"
NAME_CELL = re.compile(rf"(?P<params>{NAMES})(?:\s*\((?P<only>{NAMES})\))?")
NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
GROUP = re.compile(rf"(?P<names>{NAMES})\s+(?P<value>[^\s(].*)")


class TableError(ValueError):
    """A cell that does not follow the table format."""


def names(text: str) -> list[str]:
    return re.findall(r"`(\w+)`", text)


def parse_scalar(text: str) -> Any:
    text = text.strip()
    if m := re.fullmatch(r"`([^`]+)`", text):
        return m.group(1)
    if text in ("true", "false"):
        return text == "true"
    if NUMBER.fullmatch(text):
        return int(text) if re.fullmatch(r"-?\d+", text) else float(text)
    raise TableError(f"{text!r} is not a value (a number, true/false or `a string`)")


def parse_value(text: str) -> tuple[Any, Any, Any]:
    """``v`` or ``smoke / quick / full`` → the three values."""
    parts = text.split(" / ")
    if len(parts) == 1:
        value = parse_scalar(parts[0])
        return value, value, value
    if len(parts) != 3:
        raise TableError(f"{text!r}: write one value, or three as smoke / quick / full")
    values = tuple(parse_scalar(p) for p in parts)
    if all(same(values[0], v) for v in values[1:]):
        raise TableError(f"{text!r}: the same at every budget, so write it once")
    return values  # type: ignore[return-value]


def parse_name_cell(cell: str) -> tuple[list[str], list[str] | None]:
    """The parameters a row documents, and the plugins it is limited to (or None)."""
    m = NAME_CELL.fullmatch(cell)
    if m is None:
        raise TableError(f"parameter cell {cell!r}: expected `name`[, `name`] [(`plugin`, ...)]")
    return names(m["params"]), (names(m["only"]) if m["only"] else None)


def parse_value_cell(cell: str, plugins: list[str]) -> dict[str, tuple[Any, Any, Any]]:
    """{plugin: (smoke, quick, full)} for each of ``plugins`` the row is about."""

    def claim(found: list[str], where: str) -> None:
        for name in found:
            if name not in plugins:
                raise TableError(f"{where}: `{name}` is not one of the row's plugins {plugins}")
            if name in out:
                raise TableError(f"{where}: `{name}` has two values")

    out: dict[str, tuple[Any, Any, Any]] = {}
    if GROUP.fullmatch(cell.split(";")[0].strip()):
        # Values per plugin: `a` v; `b`, `c` v; every plugin of the row named once.
        for part in cell.split(";"):
            m = GROUP.fullmatch(part.strip())
            if m is None:
                raise TableError(f"{part.strip()!r}: expected `plugin`[, `plugin`] value")
            found = names(m["names"])
            claim(found, part.strip())
            out |= dict.fromkeys(found, parse_value(m["value"]))
        missing = [p for p in plugins if p not in out]
        if missing:
            raise TableError(f"{cell!r} gives no value for {missing}")
        return out
    m = re.fullmatch(r"(?P<base>[^()]+?)(?:\s*\((?P<exceptions>[^()]*)\))?", cell)
    if m is None:
        raise TableError(f"{cell!r}: expected value [(`plugin`: value; ...)]")
    for part in m["exceptions"].split(";") if m["exceptions"] else []:
        e = re.fullmatch(rf"(?P<names>{NAMES})\s*:\s*(?P<value>.+)", part.strip())
        if e is None:
            raise TableError(f"exception {part.strip()!r}: expected `plugin`[, `plugin`]: value")
        found = names(e["names"])
        claim(found, part.strip())
        out |= dict.fromkeys(found, parse_value(e["value"]))
    base = parse_value(m["base"])
    return {p: out.get(p, base) for p in plugins}


def same(documented: Any, declared: Any) -> bool:
    if isinstance(declared, bool) or isinstance(documented, bool):
        return type(documented) is type(declared) and documented == declared
    if isinstance(declared, (int, float)) and isinstance(documented, (int, float)):
        return math.isclose(documented, declared, rel_tol=1e-9, abs_tol=0.0)
    return type(documented) is type(declared) and documented == declared


def section_plugins(page: str, section: str) -> list[str]:
    """The plugins a section's tables are about, from ``ALL_PLUGIN_SECTIONS`` or the heading."""
    kind = PAGES[page]
    if (page, section) in ALL_PLUGIN_SECTIONS:
        return sorted(builtin(kind))
    found = names(section)
    if not found:
        raise TableError(
            f"a parameter table under {section!r} in {page}: the heading names no plugin in "
            "backticks and the section is not in ALL_PLUGIN_SECTIONS"
        )
    unknown = [n for n in found if n not in builtin(kind)]
    if unknown:
        raise TableError(f"heading {section!r} names {unknown}, not built-in {kind}s")
    return found


def row_plugins(row: Row) -> tuple[list[str], list[str]]:
    """(parameters, plugins) a row is about; raises :class:`TableError` if it cannot tell."""
    if len(row.cells) != 3:
        raise TableError(f"{len(row.cells)} cells, not 3 (parameter | value | meaning)")
    params, only = parse_name_cell(row.cells[0])
    plugins = section_plugins(row.page, row.section)
    if only is not None:
        outside = [p for p in only if p not in plugins]
        if outside:
            raise TableError(f"qualifier names {outside}, not plugins of section {row.section!r}")
        plugins = only
    return params, plugins


# -- tests ---------------------------------------------------------------------------------


@pytest.mark.parametrize("page", list(PAGES))
def test_the_pages_have_parameter_tables(page):
    tables = [t for t in ALL_TABLES if t.page == page]
    assert tables and all(t.rows for t in tables), f"no parameter table with rows in {page}"
    for table in tables:
        where = f"{page}:{table.line}"
        assert table.header[0] == "parameter" and len(table.header) == 3, (
            f"{where}: header {table.header}, expected parameter | smoke / quick / full | meaning"
        )
        assert "smoke / quick / full" in table.header[1], f"{where}: header {table.header}"
        assert table.separator_ok, f"{where}: the header's separator line is missing"
        section_plugins(page, table.section)  # every table's section maps to plugins


def test_every_method_is_named_in_a_heading_of_methods_md():
    text = (DOCS / "methods.md").read_text(encoding="utf-8")
    headed = {n for line in text.splitlines() if line.startswith("## ") for n in names(line)}
    assert set(builtin("method")) <= headed, sorted(set(builtin("method")) - headed)


@pytest.mark.parametrize("row", ALL_ROWS, ids=lambda row: row.id)
def test_documented_value_is_the_declared_default(row):
    where = f"{row.page}:{row.line} (section {row.section!r}): {row.text}"
    try:
        params, plugins = row_plugins(row)
    except TableError as exc:
        pytest.fail(f"{where}\ncannot tell what the row documents: {exc}")
    kind = PAGES[row.page]
    undeclared = [(p, name) for p in plugins for name in params if name not in builtin(kind)[p]]
    assert not undeclared, f"{where}\ndocuments parameters the code does not declare: {undeclared}"
    if (row.page, row.cells[0]) in NON_VALUE_ROWS:
        return
    try:
        documented = parse_value_cell(row.cells[1], plugins)
    except TableError as exc:
        pytest.fail(f"{where}\ncannot parse the value cell: {exc}")
    wrong = []
    for plugin in plugins:
        for name in params:
            declared = tuple(builtin(kind)[plugin][name].for_budget(b) for b in BUDGETS)
            if not all(same(d, c) for d, c in zip(documented[plugin], declared, strict=True)):
                wrong.append(f"{plugin}.{name}: documented {documented[plugin]}, declared {declared}")
    assert not wrong, f"{where}\n" + "\n".join(wrong)


@pytest.mark.parametrize("page", list(PAGES))
def test_every_declared_parameter_is_documented(page):
    kind = PAGES[page]
    documented: set[tuple[str, str]] = set()
    for row in ALL_ROWS:
        if row.page != page:
            continue
        try:
            params, plugins = row_plugins(row)
        except TableError:
            continue  # test_documented_value_is_the_declared_default fails for this row
        documented |= {(plugin, name) for plugin in plugins for name in params}
    missing = [
        f"{plugin}.{name}"
        for plugin, declared in sorted(builtin(kind).items())
        for name in declared
        if (plugin, name) not in documented and (kind, plugin, name) not in UNDOCUMENTED
    ]
    assert not missing, f"declared but in no row of docs/{page} that applies to them: {missing}"


def test_allow_lists_are_current():
    cells = {(row.page, row.cells[0]) for row in ALL_ROWS if row.cells}
    stale = [key for key in NON_VALUE_ROWS if key not in cells]
    assert not stale, f"NON_VALUE_ROWS entries with no such row: {stale}"
    undeclared = [key for key in UNDOCUMENTED if key[2] not in builtin(key[0]).get(key[1], {})]
    assert not undeclared, f"UNDOCUMENTED entries that are not declared parameters: {undeclared}"
    assert all(NON_VALUE_ROWS.values()) and all(UNDOCUMENTED.values()), "give every entry a reason"


# -- the parser itself ---------------------------------------------------------------------


def test_parser_reads_each_form():
    plugins = ["cd", "pcd"]
    assert parse_value_cell("30 / 2000 / 50000 (`pcd`: 30 / 600 / 20000)", plugins) == {
        "cd": (30, 2000, 50000), "pcd": (30, 600, 20000)}
    assert parse_value_cell("`auto`", plugins) == {"cd": ("auto",) * 3, "pcd": ("auto",) * 3}
    assert parse_value_cell("`cd` true; `pcd` 0.5 / 1 / 2", plugins) == {
        "cd": (True,) * 3, "pcd": (0.5, 1, 2)}
    assert parse_name_cell("`n_projections` (`ssm`, `ssm_vr`)") == (["n_projections"],
                                                                     ["ssm", "ssm_vr"])
    assert parse_name_cell("`a`, `b`") == (["a", "b"], None)


@pytest.mark.parametrize("cell", [
    "as for `fce`",  # a description, not a value
    "1 / 2",  # two budgets
    "1 / 1 / 1",  # the same at every budget: one value
    "`cd` 1",  # `pcd` has no value
    "`cd` 1; `cd` 2; `pcd` 3",  # `cd` twice
    "1 (`ssm`: 2)",  # not a plugin of the row
    "0.1 (pcd: 2)",  # exception without backticks
])
def test_parser_refuses_what_it_cannot_read(cell):
    with pytest.raises(TableError):
        parse_value_cell(cell, ["cd", "pcd"])


def test_values_compare_by_type():
    assert same(0.0006, 6e-4) and same(1.0, 1) and same("auto", "auto") and same(True, True)
    assert not same(1, True) and not same("1", 1) and not same(0.1, 0.01)

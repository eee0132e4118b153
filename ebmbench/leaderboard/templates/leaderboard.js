// ebmbench interactive leaderboards: the controls above each table (a metric chooser and
// a method filter) and an ordering that keeps missing values ("–") last in both
// directions. Loaded as a module before the tables, from the same DataTables bundle
// (bundled with itables), so that the ordering exists when the tables are built.
import DataTable, { jQuery as $ } from './dt_bundle.js';

function missing(x) {
  return x === null || x === undefined || x === '' || (typeof x === 'number' && Number.isNaN(x));
}

// "numlast": numbers, missing values last whichever way the column is sorted.
DataTable.ext.type.order['numlast-asc'] = (a, b) =>
  missing(a) ? (missing(b) ? 0 : 1) : missing(b) ? -1 : a - b;
DataTable.ext.type.order['numlast-desc'] = (a, b) =>
  missing(a) ? (missing(b) ? 0 : 1) : missing(b) ? -1 : b - a;

function escapeRegex(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function wire(meta) {
  const table = new DataTable.Api('#' + meta.table);
  const chooser = document.getElementById(meta.table + '-metric');
  const filter = document.getElementById(meta.table + '-method');
  // Show one metric (and its ±) or every column ('*'); sort by it when the reader asks.
  const show = (name, sort) => {
    const all = name === '*';
    for (const m of meta.metrics) {
      const on = all || m.name === name;
      table.column(m.col).visible(on, false);
      if (m.se !== null) table.column(m.se).visible(on, false);
    }
    for (const col of meta.extra) table.column(col).visible(all, false);
    table.columns.adjust();
    const chosen = meta.metrics.find((m) => m.name === name);
    if (sort && chosen) table.order([chosen.col, chosen.higher ? 'desc' : 'asc']);
    else if (sort && meta.order) table.order(meta.order);
    table.draw();
  };
  if (chooser) {
    chooser.addEventListener('change', () => show(chooser.value, true));
    show(chooser.value, false);  // the page opens in rank order
  }
  if (filter) {
    filter.addEventListener('change', () => {
      const value = filter.value;
      table.column(meta.method_col)
        .search(value ? '^' + escapeRegex(value) + '$' : '', true, false)
        .draw();
    });
  }
}

document.addEventListener('DOMContentLoaded', () => {
  for (const node of document.querySelectorAll('script[type="application/json"].table-meta')) {
    wire(JSON.parse(node.textContent));
  }
});

// JSON figures as tables: the datasheet (datasheet.json) and the lists of a diff.
//
// The renderer follows the data's shape rather than a fixed schema, so a datasheet that
// gains figures still shows them: scalars become a two-column table, an object of objects
// (e.g. per split) a matrix with one row per key, a list of objects a table with one column
// per field, a list of scalars a list.

import { el, formatValue, isPlainObject } from "./dom.js";

/** Lists longer than this show their first rows and say how many are left out. */
export const MAX_ROWS = 200;

function heading(depth, text) {
  return el(`h${Math.min(6, 3 + depth)}`, { class: "ds-fig-title" }, humanise(text));
}

/** "clips_added" -> "Clips added". */
export function humanise(key) {
  const text = String(key).replace(/_/g, " ");
  return text.charAt(0).toUpperCase() + text.slice(1);
}

function keyValueTable(entries) {
  return el(
    "table",
    { class: "grid ds-kv" },
    el(
      "tbody",
      {},
      entries.map(([key, value]) =>
        el("tr", {}, el("th", { scope: "row" }, humanise(key)), el("td", {}, formatValue(value))),
      ),
    ),
  );
}

/** A table of `rows` (objects) with the union of their keys as columns. */
export function recordsTable(rows) {
  const columns = [];
  for (const row of rows.slice(0, MAX_ROWS)) {
    for (const key of Object.keys(isPlainObject(row) ? row : { value: row })) {
      if (!columns.includes(key)) columns.push(key);
    }
  }
  const body = rows.slice(0, MAX_ROWS).map((row) => {
    const record = isPlainObject(row) ? row : { value: row };
    return el("tr", {}, columns.map((key) => el("td", {}, formatValue(record[key]))));
  });
  return el(
    "div",
    {},
    el(
      "table",
      { class: "grid ds-records" },
      el("thead", {}, el("tr", {}, columns.map((key) => el("th", { scope: "col" }, humanise(key))))),
      el("tbody", {}, body),
    ),
    leftOut(rows.length),
  );
}

function leftOut(count) {
  return count > MAX_ROWS ? el("p", { class: "muted" }, `… and ${count - MAX_ROWS} more.`) : null;
}

function scalarList(values) {
  return el(
    "div",
    {},
    el("ul", { class: "ds-list" }, values.slice(0, MAX_ROWS).map((v) => el("li", {}, formatValue(v)))),
    leftOut(values.length),
  );
}

/** An array as a list (scalars) or a table (objects). */
export function arrayView(values) {
  if (values.length === 0) return el("p", { class: "muted" }, "None.");
  return values.some(isPlainObject) ? recordsTable(values) : scalarList(values);
}

/** `family`: {rowKey: object}. Scalar fields form a matrix; object fields recurse. */
function familyView(title, family, depth) {
  const rows = Object.keys(family);
  const scalarColumns = [];
  const nested = [];
  for (const member of Object.values(family)) {
    for (const [key, value] of Object.entries(isPlainObject(member) ? member : {})) {
      if (scalarColumns.includes(key) || nested.includes(key)) continue;
      (isPlainObject(value) ? nested : scalarColumns).push(key);
    }
  }
  const parts = [heading(depth, title)];
  if (scalarColumns.length) {
    parts.push(
      el(
        "table",
        { class: "grid ds-matrix" },
        el(
          "thead",
          {},
          el("tr", {}, el("th", {}), scalarColumns.map((c) => el("th", { scope: "col" }, humanise(c)))),
        ),
        el(
          "tbody",
          {},
          rows.map((row) =>
            el(
              "tr",
              {},
              el("th", { scope: "row" }, row),
              scalarColumns.map((c) => el("td", {}, formatValue((family[row] || {})[c]))),
            ),
          ),
        ),
      ),
    );
  }
  for (const key of nested) {
    const sub = Object.fromEntries(rows.map((row) => [row, (family[row] || {})[key] || {}]));
    parts.push(familyView(key, sub, depth + 1));
  }
  return el("div", { class: "ds-fig" }, parts);
}

/** Any JSON object as headed tables; `depth` 0 is a top-level section. */
export function objectView(title, data, depth = 0) {
  if (!isPlainObject(data)) {
    return el("div", { class: "ds-fig" }, heading(depth, title), Array.isArray(data) ? arrayView(data) : el("p", {}, formatValue(data)));
  }
  const parts = [heading(depth, title)];
  const scalars = Object.entries(data).filter(([, v]) => !isPlainObject(v) && !Array.isArray(v));
  if (scalars.length) parts.push(keyValueTable(scalars));
  for (const [key, value] of Object.entries(data)) {
    if (Array.isArray(value)) {
      parts.push(el("div", { class: "ds-fig" }, heading(depth + 1, key), arrayView(value)));
    } else if (isPlainObject(value)) {
      const members = Object.values(value);
      const isFamily = members.length > 0 && members.every(isPlainObject);
      parts.push(isFamily ? familyView(key, value, depth + 1) : objectView(key, value, depth + 1));
    }
  }
  return el("div", { class: "ds-fig" }, parts);
}

/** The whole datasheet.json: one section per top-level key. */
export function datasheetView(data) {
  if (!isPlainObject(data)) return [el("p", { class: "muted" }, "The datasheet is not an object.")];
  return Object.entries(data).map(([key, value]) => objectView(key, value, 0));
}

// Client-side sorting of the quality tables (templates/review/*.html): a click on a heading
// with data-sort sorts the rows on each cell's data-value (numbers or text; empty values
// last), a second click reverses. No inline script: the page's CSP allows none.

function compare(kind, a, b) {
  if (a === "" && b === "") return 0;
  if (a === "") return 1;
  if (b === "") return -1;
  if (kind === "num") return Number(a) - Number(b);
  return a.localeCompare(b);
}

export function sortTable(table, column, kind, descending) {
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  const value = (row) => {
    const cell = row.cells[column];
    return cell ? (cell.dataset.value ?? cell.textContent.trim()) : "";
  };
  rows.sort((r1, r2) => {
    const v1 = value(r1);
    const v2 = value(r2);
    if (v1 === "" || v2 === "") return compare(kind, v1, v2);
    const order = compare(kind, v1, v2);
    return descending ? -order : order;
  });
  body.append(...rows);
}

function wire(table) {
  const headings = Array.from(table.tHead.rows[0].cells);
  headings.forEach((th, column) => {
    const kind = th.dataset.sort;
    if (!kind) return;
    th.tabIndex = 0;
    th.classList.add("sortable");
    const activate = () => {
      const descending = th.getAttribute("aria-sort") === "ascending";
      headings.forEach((other) => other.removeAttribute("aria-sort"));
      th.setAttribute("aria-sort", descending ? "descending" : "ascending");
      sortTable(table, column, kind, descending);
    };
    th.addEventListener("click", activate);
    th.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        activate();
      }
    });
  });
}

document.querySelectorAll("table.rv-sortable").forEach(wire);

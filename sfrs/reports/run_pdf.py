"""report.pdf: the run report drawn with matplotlib's ``PdfPages`` only.

matplotlib is already a dependency and its PDF backend needs nothing else, so the PDF
adds no package: the tables are drawn as matplotlib tables (long ones over several
pages, a table wider than tall transposed, fonts shrunk to the page's width), the
figures are drawn again as vector pages, and gallery PNGs are placed as images.
Markdown is not rendered (no LaTeX, no HTML engine): report.md stays the reference and
the PDF its printable companion.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from sfrs.reports.run_tables import Table
from sfrs.utils.io import atomic_path

#: table rows per PDF page
ROWS_PER_PAGE = 28
#: a table with more columns than this (and fewer rows) is drawn transposed
MAX_COLUMNS = 10
PAGE_SIZE = (11.69, 8.27)  # A4 landscape, inches


def _for_page(table: Table) -> Table:
    """A table with more columns than rows (many differing keys, few entries) turned on
    its side: one row per column, so that it fits the page's width."""
    if len(table.header) <= MAX_COLUMNS or len(table.rows) + 1 >= len(table.header):
        return table
    header = [""] + [row[0] for row in table.rows]
    rows = [[table.header[j]] + [row[j] for row in table.rows] for j in range(1, len(table.header))]
    return Table(table.title, header, rows, table.note)


def _fit_width(fig: Any, ax: Any, drawn: Any, size: float) -> None:
    """Shrink the font until the table is no wider than its axes (down to 3 pt)."""
    renderer = fig.canvas.get_renderer()
    available = ax.get_window_extent(renderer).width
    while size > 3 and drawn.get_window_extent(renderer).width > available:
        size -= 0.5
        drawn.set_fontsize(size)
        fig.canvas.draw()


def _table_pages(pdf: Any, table: Table, plt: Any) -> None:
    table = _for_page(table)
    chunks = [table.rows[i:i + ROWS_PER_PAGE] for i in range(0, len(table.rows), ROWS_PER_PAGE)] or [[]]
    for page, rows in enumerate(chunks):
        fig = plt.figure(figsize=PAGE_SIZE)
        title = table.title + (f" ({page + 1}/{len(chunks)})" if len(chunks) > 1 else "")
        fig.text(0.03, 0.95, title, fontsize=14, weight="bold", va="top")
        if table.note:
            fig.text(0.03, 0.91, table.note, fontsize=8, va="top", wrap=True)
        if rows and table.header:
            ax = fig.add_axes([0.03, 0.05, 0.94, 0.82])
            ax.axis("off")
            drawn = ax.table(cellText=rows, colLabels=table.header, loc="upper center", cellLoc="left")
            drawn.auto_set_font_size(False)
            drawn.set_fontsize(7)
            drawn.auto_set_column_width(list(range(len(table.header))))
            fig.canvas.draw()
            _fit_width(fig, ax, drawn, 7)
        pdf.savefig(fig)
        plt.close(fig)


def write_pdf(path: Path, title: str, lines: Sequence[str], tables: Sequence[Table], figures: Sequence[Any],
              images: Sequence[Path]) -> Path:
    """A title page with ``lines``, then ``tables``, ``figures`` (matplotlib figures,
    closed here) and ``images`` (PNG files, one per page), written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.image as mpimg
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    with atomic_path(path) as tmp:
        with PdfPages(tmp) as pdf:
            fig = plt.figure(figsize=PAGE_SIZE)
            fig.text(0.03, 0.95, title, fontsize=18, weight="bold", va="top")
            fig.text(0.03, 0.88, "\n".join(lines), fontsize=9, va="top", family="monospace")
            pdf.savefig(fig)
            plt.close(fig)
            for table in tables:
                _table_pages(pdf, table, plt)
            for figure in figures:
                pdf.savefig(figure)
                plt.close(figure)
            for image in images:
                fig = plt.figure(figsize=PAGE_SIZE)
                ax = fig.add_axes([0.02, 0.02, 0.96, 0.9])
                ax.imshow(mpimg.imread(str(image)))
                ax.axis("off")
                fig.text(0.02, 0.96, Path(image).name, fontsize=10)
                pdf.savefig(fig)
                plt.close(fig)
    return Path(path)

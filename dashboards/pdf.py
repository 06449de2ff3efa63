"""PDF reports: the HTML pages of :mod:`dashboards.reports` printed by WeasyPrint.

Advisors print the reports and forward them to elected officials, so
``econome report ... --out X.pdf`` writes a PDF. The page layout (A4, margins,
page numbers, no page break inside a table row or a chart) is the print part
of the reports' stylesheet (``dashboards.reports._CSS``): the PDF is the HTML
page as a browser would print it, with nothing of its own.

WeasyPrint needs Pango (Debian: ``libpango-1.0-0 libpangoft2-1.0-0``,
installed by ``scripts/install``).

>>> from dashboards.reports import render_page
>>> report_pdf(render_page("Essai", "<p>corps</p>"))[:5]
b'%PDF-'
"""

from __future__ import annotations

import logging

from streams.errors import ConfigError

__all__ = ["report_pdf"]

logger = logging.getLogger(__name__)


def report_pdf(page: str) -> bytes:
    """The PDF of a report's HTML page.

    Args:
        page: a complete HTML document whose images are ``data:`` URIs (as the reports make them):
            nothing is fetched from the network or the disk.

    Returns:
        The PDF document.

    Raises:
        ConfigError: WeasyPrint or the Pango library it needs is not installed.
    """
    try:
        # Imported here: WeasyPrint costs a third of a second, and only PDF output needs it.
        from weasyprint import HTML
    except (ImportError, OSError) as exc:  # OSError: Pango missing (WeasyPrint loads it at import)
        msg = f"cannot write a PDF: WeasyPrint or Pango is missing ({exc}); run scripts/install"
        raise ConfigError(msg) from exc
    pdf = HTML(string=page).write_pdf()
    if not isinstance(pdf, bytes):  # pragma: no cover - write_pdf without a target returns the bytes
        msg = "WeasyPrint returned no PDF"
        raise ConfigError(msg)
    logger.debug("report PDF: %d bytes", len(pdf))
    return pdf

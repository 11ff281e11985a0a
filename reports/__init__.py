"""Reports for finance analysts: report.html and report.xlsx per date, and over a range of dates.

Entry points: ``reports.build.write_reports`` (one date, called by the reconcile
job on its staging folder) and ``reports.build.write_range_report`` (``recon
report --from --to``). Reading (rows streamed, never all in memory) and
masking live in ``reports.data`` and ``schemas.masking``; rendering in
``reports.html`` (the most urgent rows, picked by ``reports.shortlist``) and
``reports.xlsx`` (every row, written as it streams).
"""

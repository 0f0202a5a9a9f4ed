"""`xlrec report`'s full report: an experiment's runs in MLflow turned into report.md and a
self-contained report.html (protocol, Table 4, significance, Table 6, figures with their CSVs),
logged back to MLflow. runs.py reads MLflow, sections.py analyses, document.py renders,
publish.py writes the folder and logs it."""

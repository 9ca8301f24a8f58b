"""What users run: folder triage and its engines, results and the report page, enhancement and
generation over files, Triton serving models, and the runtime's commands."""

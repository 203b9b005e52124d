"""Evaluation of trained models.

  evaluate           validation passes, the test report and eval.json
  requested_metrics  which metrics eval.json holds (per model's defaults or
                     --metrics), and their entries
  sample_quality     Frechet distance and PRD on an offline classifier's
                     features
"""

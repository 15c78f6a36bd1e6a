"""Evaluation: batched generation, scoring, reports, tables and plots."""

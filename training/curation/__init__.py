"""Curation: importers for the paper's sources, its filters, sampling and quotas."""

"""Training library: data formatting and label masking, the LIMA recipe, curation filters.
Knows nothing of Django."""

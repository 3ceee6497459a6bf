"""Training data: the corpus builder, manifests, on-the-fly mixing datasets and public-layout
readers. See ``resources/DATA_CARD.md`` for what the built corpus holds."""

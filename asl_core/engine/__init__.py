"""The representation engine: features of a checkpoint's layers, 2-D projections, metrics and
the disk cache that keeps them. Never imports training."""

"""Seeded reproduction of the thesis experiments: composes the pipeline, holds no algorithm."""

"""Helpers shared by the engine and the apis (drawing, reading images).

These sit below both :mod:`toolbox.engine` and :mod:`toolbox.apis`, so
neither has to import the other.
"""

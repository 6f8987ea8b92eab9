"""The DeepEyes page's pieces (pages/deepeyes.py composes them): the run picker (`run_picker`), the
controls and the state they keep (`controls`), one module per section (`training`, `layer` with
its `maps`, `diagnosis`), and the caches of recorded runs (`caches`, also the Training page's)."""

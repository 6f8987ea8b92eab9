"""The CNNVis page's pieces, one module per section: `controls` (URL state, labelled images,
expanded groups, the toolbar), `picture` (the picture, its clicks, the neuron dialog, the
comparison), `flags` (quality flags), `debugging` (a recorded run's layer averages), `export`
(SVG and PNG), and `caches` (views and pictures shared by every session)."""

"""CNNVis (Liu et al., 2017): neuron clusters, packed learned features, reordered activation
matrices and biclustering-based edge bundling over any model of the zoo.

The three algorithms of the paper's section 6 live in their own modules (`packing`, `ordering`,
`bundling`); `pipeline` turns an activation analysis into the clusters the view draws.
"""

from convlens.cnnvis.bundling import Bicluster, bundle_edges
from convlens.cnnvis.ordering import reorder_rows
from convlens.cnnvis.packing import pack_rectangles

__all__ = ["Bicluster", "bundle_edges", "pack_rectangles", "reorder_rows"]

"""Row reordering of activation matrices (CNNVis section 6.2.2).

The rows are ordered to maximise the summed cosine similarity of adjacent rows (eq. 2), an open
path. Up to `exact_limit` rows the Held-Karp dynamic programme solves it exactly. Above, the
rows are divided by modularity on their similarity graph (Louvain over a k-nearest-neighbour
graph, then Newman's greedy merging of its communities down to `exact_limit` parts), each part is
ordered recursively, and Held-Karp orders the parts and picks each part's orientation by the
similarity of the rows that meet at the joins. 2-opt then reverses segments while that raises
the objective. All of it is deterministic (Louvain runs with a fixed seed).
"""

from __future__ import annotations

import networkx as nx
import numpy as np
from networkx.algorithms.community import greedy_modularity_communities, louvain_communities

NEIGHBOURS = 10  # k of the k-nearest-neighbour graph that the modularity split runs on
SEED = 0  # Louvain visits nodes in a random order; a fixed seed makes the order reproducible
TWO_OPT_ROUNDS = 500  # a bound on the rounds of 2-opt; each applies many reversals
MIN_GAIN = 1e-12


def cosine_similarity(matrix: np.ndarray) -> np.ndarray:
    """Return the (n, n) cosine similarities of `matrix`'s rows; a zero row is 0 with every row.

    NaN entries (a class without images) count as 0.
    """
    unit = _unit_rows(matrix)
    return unit @ unit.T


def adjacent_similarity(matrix: np.ndarray, order: np.ndarray) -> float:
    """Return the summed cosine similarity of adjacent rows of `matrix[order]` (eq. 2)."""
    unit = _unit_rows(matrix)[np.asarray(order, dtype=np.intp)]
    return float(np.einsum("ij,ij->", unit[:-1], unit[1:]))


def reorder_rows(matrix: np.ndarray, exact_limit: int = 10) -> np.ndarray:
    """Return the row order (a permutation) that makes adjacent rows of `matrix[order]` similar.

    Exact (Held-Karp) for at most `exact_limit` rows, divide and conquer with 2-opt above.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"reorder_rows needs a 2-D matrix, got shape {matrix.shape}.")
    if exact_limit < 2:
        raise ValueError(f"exact_limit must be at least 2, got {exact_limit}.")
    similarity = cosine_similarity(matrix)
    rows = np.arange(len(matrix))
    if len(rows) <= exact_limit:
        return rows[_held_karp_rows(similarity)]
    order = _divide_and_conquer(similarity, rows, exact_limit)
    return _two_opt(similarity, order)


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    matrix = np.nan_to_num(np.asarray(matrix, dtype=np.float64), nan=0.0)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)


# --------------------------------------------------------------------------------------------
# Held-Karp


def _held_karp_rows(similarity: np.ndarray) -> np.ndarray:
    """Return the exact best open path through all rows of a (small) similarity matrix."""
    if len(similarity) <= 1:
        return np.arange(len(similarity))
    return _held_karp(similarity, np.arange(len(similarity)))


def _held_karp(join: np.ndarray, item_of_state: np.ndarray) -> np.ndarray:
    """Return the states of the best open path that visits every item once, through one state each.

    An item is a row, or a part in one of its two orientations; `join[u, t]` is the gain of
    leaving state u for state t. dp[mask, t] is the best path over the items in `mask` that
    ends in state t; all masks with the same number of items are computed at once.
    """
    states = len(item_of_state)
    items = int(item_of_state.max()) + 1
    bit = (1 << item_of_state).astype(np.int64)
    masks = np.arange(1 << items, dtype=np.int64)
    dp = np.full((len(masks), states), -np.inf)
    dp[bit, np.arange(states)] = 0.0
    parent = np.full((len(masks), states), -1, dtype=np.int32)
    in_mask = (masks[:, None] & bit[None, :]) != 0
    sizes = sum((masks >> item) & 1 for item in range(items))  # items in each mask
    for size in range(2, items + 1):
        layer = masks[sizes == size]
        previous = layer[:, None] ^ bit[None, :]  # (masks, states): the mask before state t
        candidates = dp[previous] + join.T[None, :, :]  # [mask, t, u]: arrive in t from u
        best = candidates.argmax(axis=2)
        values = np.take_along_axis(candidates, best[:, :, None], axis=2)[:, :, 0]
        valid = in_mask[layer]
        dp[layer] = np.where(valid, values, -np.inf)
        parent[layer] = np.where(valid, best, -1)
    mask = int(masks[-1])
    state = int(dp[mask].argmax())
    path = []
    while state >= 0:
        path.append(state)
        previous_state = int(parent[mask, state])
        mask ^= int(bit[state])
        state = previous_state
    return np.array(path[::-1], dtype=np.intp)


# --------------------------------------------------------------------------------------------
# Divide and conquer


def _divide_and_conquer(similarity: np.ndarray, rows: np.ndarray, limit: int) -> np.ndarray:
    """Return an order of `rows` (indices into `similarity`) built part by part."""
    if len(rows) <= limit:
        return rows[_held_karp_rows(similarity[np.ix_(rows, rows)])]
    within = similarity[np.ix_(rows, rows)]
    parts = split_by_modularity(within, limit)
    if len(parts) == 1:  # no community structure; Newman's method would peel off single rows
        parts = _spectral_runs(within, limit)
    parts = [rows[part] for part in parts]
    orders = [_divide_and_conquer(similarity, part, limit) for part in parts]
    return _join_parts(similarity, orders)


def _join_parts(similarity: np.ndarray, orders: list[np.ndarray]) -> np.ndarray:
    """Concatenate ordered parts in the order and orientations that maximise the joins.

    State 2p is part p read forwards, 2p + 1 backwards; a join from u to t is the similarity
    of u's last row and t's first row.
    """
    firsts = np.array([[order[0], order[-1]] for order in orders]).ravel()
    lasts = np.array([[order[-1], order[0]] for order in orders]).ravel()
    join = similarity[np.ix_(lasts, firsts)]
    path = _held_karp(join, np.repeat(np.arange(len(orders)), 2))
    return np.concatenate([orders[state // 2][:: -1 if state % 2 else 1] for state in path])


def split_by_modularity(similarity: np.ndarray, limit: int) -> list[np.ndarray]:
    """Split rows (n >= 2) into at most `limit` parts of high modularity on their similarity
    graph; one part when the rows have no community structure.

    Louvain finds the communities of the k-nearest-neighbour graph; when there are more than
    `limit`, Newman's greedy agglomeration merges them on the graph between communities (and
    what it cannot merge, having no edges between, is grouped by index). Newman's method alone
    (networkx's greedy_modularity_communities) is several times slower on a 512-row graph.

    Rows similar to no other row (dead neurons: no edge in the graph) form one part of their
    own: as communities of one they were split off a few at a time, and a recursive split of
    808 neurons, 113 of them dead, took 18 Louvain runs of ~800 rows.
    """
    graph = _neighbour_graph(similarity)
    isolated = [node for node, degree in graph.degree() if degree == 0]
    if len(isolated) == len(similarity):
        return [np.arange(len(similarity))]
    linked = graph
    if isolated:  # a copy: Louvain runs several times slower on a subgraph's filtered view
        linked = graph.copy()
        linked.remove_nodes_from(isolated)
    room = max(limit - 1, 1) if isolated else limit
    communities = [
        sorted(found) for found in louvain_communities(linked, weight="weight", seed=SEED)
    ]
    if len(communities) > room:
        groups = greedy_modularity_communities(
            _community_graph(graph, communities), weight="weight", best_n=room
        )
        communities = [sum((communities[c] for c in sorted(group)), []) for group in groups]
    communities = sorted((sorted(community) for community in communities), key=lambda c: c[0])
    if len(communities) > room:
        groups = np.array_split(np.arange(len(communities)), room)
        communities = [sum((communities[c] for c in group), []) for group in groups]
    if isolated:
        communities = sorted([*communities, isolated], key=lambda c: c[0])
    return [np.array(community, dtype=np.intp) for community in communities]


def _spectral_runs(similarity: np.ndarray, limit: int) -> list[np.ndarray]:
    """Cut the rows, ordered by the Fiedler vector of the similarity graph, into equal runs of
    at most `limit` rows (at most `limit` runs, at least 2)."""
    weights = np.clip(similarity, 0.0, None)
    np.fill_diagonal(weights, 0.0)
    laplacian = np.diag(weights.sum(axis=1)) - weights
    fiedler = np.linalg.eigh(laplacian)[1][:, 1]
    runs = min(limit, max(2, -(-len(similarity) // limit)))
    return np.array_split(np.argsort(fiedler, kind="stable"), runs)


def _nearest_neighbours(similarity: np.ndarray) -> np.ndarray:
    """Return (n, k) indices of each row's k most similar other rows (n >= 2), in no order."""
    k = min(NEIGHBOURS, len(similarity) - 1)
    scores = similarity.copy()
    np.fill_diagonal(scores, -np.inf)
    return np.argpartition(-scores, k - 1, axis=1)[:, :k]


def _neighbour_graph(similarity: np.ndarray) -> nx.Graph:
    """Return the graph joining each row to its most similar rows, weighted by similarity > 0."""
    n = len(similarity)
    neighbours = _nearest_neighbours(similarity)
    sources = np.repeat(np.arange(n), neighbours.shape[1])
    targets = neighbours.ravel()
    weights = similarity[sources, targets]
    keep = weights > 0
    graph = nx.Graph()
    graph.add_nodes_from(range(n))
    graph.add_weighted_edges_from(
        zip(sources[keep].tolist(), targets[keep].tolist(), weights[keep].tolist(), strict=True)
    )
    return graph


def _community_graph(graph: nx.Graph, communities: list[list[int]]) -> nx.Graph:
    """Return the graph of communities: edge weights summed, inner weights as self-loops (so
    that each community keeps its degree and modularity is the same as on `graph`)."""
    label = np.empty(graph.number_of_nodes(), dtype=np.intp)
    for index, community in enumerate(communities):
        label[community] = index
    edges = np.array(list(graph.edges(data="weight")), dtype=np.float64).reshape(-1, 3)
    ends = label[edges[:, :2].astype(np.intp)]
    between = np.zeros((len(communities), len(communities)))
    np.add.at(between, (ends[:, 0], ends[:, 1]), edges[:, 2])
    return nx.from_numpy_array(between + between.T - np.diag(np.diagonal(between)))


# --------------------------------------------------------------------------------------------
# 2-opt


def _two_opt(similarity: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Reverse segments of `order` while that raises the adjacent similarity.

    A virtual row with similarity 0 to every row at both ends makes reversing a prefix or a
    suffix an ordinary move. Each round computes the gain of many reversals at once and applies
    the best ones that share no edge: first only reversals that create an edge to one of a row's
    nearest neighbours (O(n k) a round), then, when none of those is left, all O(n^2) of them.
    The result is a 2-opt optimum unless the round limit stops it first.
    """
    n = len(order)
    padded = np.zeros((n + 1, n + 1))
    padded[:n, :n] = similarity
    neighbours = _nearest_neighbours(similarity)
    order = order.copy()
    for _ in range(TWO_OPT_ROUNDS):
        path = np.concatenate([[n], order, [n]])
        moves = _independent_moves(*_neighbour_gains(padded, path, neighbours))
        if not moves:
            moves = _independent_moves(*_all_gains(padded, path))
        if not moves:
            break
        for first, last in moves:
            order[first : last + 1] = order[first : last + 1][::-1]
    return order


def _reversal_gain(
    padded: np.ndarray, path: np.ndarray, first: np.ndarray, last: np.ndarray
) -> np.ndarray:
    """The gain of reversing order[first..last] (path = order between two virtual rows): first's
    predecessor then joins last, and first joins last's successor."""
    before, start, end, after = path[first], path[first + 1], path[last + 1], path[last + 2]
    return padded[before, end] + padded[start, after] - padded[before, start] - padded[end, after]


def _neighbour_gains(
    padded: np.ndarray, path: np.ndarray, neighbours: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (first, last, gain) of the reversals whose new edges join nearest neighbours."""
    n, k = neighbours.shape
    position = np.full(n + 1, -1, dtype=np.intp)  # the virtual row n has none
    position[path[1:-1]] = np.arange(n)
    firsts = np.repeat(np.arange(n), k)
    # new edge (predecessor of first, last): last is a neighbour of first's predecessor
    predecessor = path[:-2]  # path[a] precedes position a
    with_predecessor = np.where(predecessor[:, None] < n, neighbours[predecessor % n], n)
    lasts_a = position[with_predecessor.ravel()]
    # new edge (first, successor of last): last + 1 is a neighbour of first
    lasts_b = position[neighbours[path[1:-1]].ravel()] - 1
    first = np.concatenate([firsts, firsts])
    last = np.concatenate([lasts_a, lasts_b])
    valid = (last > first) & (last < n)
    first, last = first[valid], last[valid]
    return first, last, _reversal_gain(padded, path, first, last)


def _all_gains(padded: np.ndarray, path: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (first, last, gain) of the best reversal starting at each position."""
    along = padded[np.ix_(path, path)]
    edges = np.diagonal(along, offset=1)  # edges[i] joins path[i] and path[i + 1]
    gain = along[:-2, 1:-1] + along[1:-1, 2:]  # [first, last], as in _reversal_gain
    gain -= edges[:-1, None]
    gain -= edges[None, 1:]
    gain[np.tril_indices(len(gain))] = -np.inf  # a reversal needs first < last
    first = np.arange(len(gain))
    last = gain.argmax(axis=1)
    return first, last, gain[first, last]


def _independent_moves(
    first: np.ndarray, last: np.ndarray, gain: np.ndarray
) -> list[tuple[int, int]]:
    """Return improving reversals (first, last), best first and at most one per first position,
    no two changing the same edge or overlapping."""
    improving = gain > MIN_GAIN
    first, last, gain = first[improving], last[improving], gain[improving]
    if len(gain) == 0:
        return []
    by_first = np.lexsort((-gain, first))
    keep = by_first[np.r_[True, np.diff(first[by_first]) != 0]]
    keep = keep[np.argsort(-gain[keep], kind="stable")]
    changed = np.zeros(int(last.max(initial=0)) + 2, dtype=bool)  # changed[i]: edge into i
    moves = []
    for a, b in zip(first[keep].tolist(), last[keep].tolist(), strict=True):
        if changed[a : b + 2].any():
            continue
        changed[a : b + 2] = True
        moves.append((a, b))
    return moves

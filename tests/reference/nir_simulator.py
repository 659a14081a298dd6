"""A plain clocked simulator of NIR graphs, written for clarity, not speed: the oracle that shows
an exported graph's *primitives* compute the fptt network (no fptt code, no metadata read).

Semantics (those stated in fptt.interop.nir): steps of length dt; a neuron node integrates NIR's
τ dv/dt = (v_leak − v) + R I with its summed input held over the step, exactly (``"zoh"``:
v ← e^{-dt/τ} v + (1 − e^{-dt/τ}) (v_leak + R I)) or by one forward-Euler step (``"euler"``:
v ← v + (dt/τ) (v_leak + R I − v)); a LIF node fires
z = [v > v_threshold] and sets v ← v_reset where it fired; Threshold z = [x > θ]; Affine W x + b;
Linear W x. Edges are evaluated in a topological order of the graph without its back edges; a
back edge (one closing a cycle) delivers the previous step's value (zeros at the first step).
"""
from __future__ import annotations

import numpy as np


def _order(nodes: dict, edges: list[tuple[str, str]]) -> tuple[list[str], set[tuple[str, str]]]:
    """Depth-first order from the inputs; an edge to a node already on the path is a back edge."""
    successors: dict[str, list[str]] = {name: [] for name in nodes}
    for source, target in edges:
        successors[source].append(target)
    order: list[str] = []
    back: set[tuple[str, str]] = set()
    state: dict[str, int] = {}

    def visit(name: str) -> None:
        state[name] = 1
        for target in successors[name]:
            if state.get(target) == 1:
                back.add((name, target))
            elif target not in state:
                visit(target)
        state[name] = 2
        order.append(name)

    for name, node in nodes.items():
        if type(node).__name__ == "Input" and name not in state:
            visit(name)
    order.reverse()
    return order, back


def simulate(graph, x: np.ndarray, dt: float = 1.0, discretization: str = "zoh") -> np.ndarray:
    """Run ``graph`` on ``x`` (batch, time, features); returns the output node's values (batch, time, out)."""
    nodes, edges = graph.nodes, list(graph.edges)
    order, back = _order(nodes, edges)
    # a forward edge into an earlier-ordered node would also read the previous step
    position = {name: index for index, name in enumerate(order)}
    back |= {(s, t) for s, t in edges if position[t] <= position[s]}
    batch = x.shape[0]
    voltage: dict[str, np.ndarray] = {}
    previous: dict[str, np.ndarray] = {}
    outputs = []
    for t in range(x.shape[1]):
        current: dict[str, np.ndarray] = {}
        for name in order:
            node = nodes[name]
            kind = type(node).__name__
            incoming = [current[s] if (s, name) not in back else previous.get(s) for s, target in edges
                        if target == name]
            incoming = [value for value in incoming if value is not None]
            total = sum(incoming) if incoming else None
            if kind == "Input":
                value = x[:, t]
            elif kind == "Output":
                value = total
            elif kind == "Affine":
                value = total @ np.asarray(node.weight).T + np.asarray(node.bias)
            elif kind == "Linear":
                value = total @ np.asarray(node.weight).T
            elif kind in ("LI", "LIF"):
                tau, r, leak = (np.asarray(node.tau), np.asarray(node.r), np.asarray(node.v_leak))
                decay = np.exp(-dt / tau) if discretization == "zoh" else 1.0 - dt / tau
                v = voltage.get(name, np.zeros((batch, tau.shape[0])))
                drive = leak + r * (total if total is not None else 0.0)
                v = decay * v + (1.0 - decay) * drive
                if kind == "LIF":
                    spikes = (v > np.asarray(node.v_threshold)).astype(np.float64)
                    v = np.where(spikes > 0, np.asarray(node.v_reset), v)
                    value = spikes
                else:
                    value = v
                voltage[name] = v
            elif kind == "Threshold":
                value = (total > np.asarray(node.threshold)).astype(np.float64)
            else:
                raise NotImplementedError(f"the reference simulator has no {kind} node")
            current[name] = value
        previous = current
        outputs.append(current[[n for n, node in nodes.items() if type(node).__name__ == "Output"][0]])
    return np.stack(outputs, axis=1)

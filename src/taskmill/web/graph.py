"""Laying out a task's dependency graph for the task page's inline SVG.

Drawn on the server, so the page needs no script (and the CSP no exception) to show
it: tasks in columns by run order, the ones that must complete first on the left, an
arrow from each child to the parent waiting for it (web2py's naming: the parent runs
after the child). The template only places the boxes and paths computed here.
"""

from __future__ import annotations

from typing import Any

from taskmill.store.admin import DependencyGraph

NODE_WIDTH = 190
NODE_HEIGHT = 46
COLUMN_GAP = 70
ROW_GAP = 18
MARGIN = 8
LABEL_CHARS = 24


def levels(graph: DependencyGraph) -> dict[int, int]:
    """Column of each task: 0 for those that wait for nobody in the graph, else one
    more than the furthest child. A cycle (web2py's validate removes those, but edges
    are written before it runs) stops growing after as many rounds as there are tasks."""
    level = {node.id: 0 for node in graph.nodes}
    for _ in range(len(level)):
        changed = False
        for edge in graph.edges:
            wanted = level.get(edge.child, 0) + 1
            if edge.parent in level and level[edge.parent] < wanted <= len(level):
                level[edge.parent] = wanted
                changed = True
        if not changed:
            break
    return level


def _label(text: str) -> str:
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "\u2026"


def layout(graph: DependencyGraph) -> dict[str, Any] | None:
    """Boxes and arrows in SVG user units; None when the task has no dependencies."""
    if not graph.nodes:
        return None
    level = levels(graph)
    columns: dict[int, list[int]] = {}
    for node in graph.nodes:
        columns.setdefault(level[node.id], []).append(node.id)
    position: dict[int, tuple[int, int]] = {}
    for column, ids in columns.items():
        for row, node_id in enumerate(sorted(ids)):
            x = MARGIN + column * (NODE_WIDTH + COLUMN_GAP)
            y = MARGIN + row * (NODE_HEIGHT + ROW_GAP)
            position[node_id] = (x, y)
    nodes = []
    for node in graph.nodes:
        x, y = position[node.id]
        name = node.task_name or node.function_name or "(deleted task)"
        nodes.append(
            {
                "id": node.id,
                "x": x,
                "y": y,
                "label": _label(f"#{node.id} {name}"),
                "title": f"task {node.id}: {name}",
                "status": node.status or "MISSING",
                "current": node.id == graph.task_id,
                "exists": node.status is not None,
            }
        )
    edges = []
    for edge in graph.edges:
        (cx, cy), (px, py) = position[edge.child], position[edge.parent]
        start_x, start_y = cx + NODE_WIDTH, cy + NODE_HEIGHT // 2
        end_x, end_y = px, py + NODE_HEIGHT // 2
        bend = max(COLUMN_GAP // 2, abs(end_x - start_x) // 2)
        edges.append(
            {
                "parent": edge.parent,
                "child": edge.child,
                "done": edge.done,
                "title": (
                    f"task {edge.parent} waits for task {edge.child}"
                    f"{' (done)' if edge.done else ''}; job {edge.job_name or '?'}"
                ),
                "d": (
                    f"M {start_x} {start_y} C {start_x + bend} {start_y}, "
                    f"{end_x - bend} {end_y}, {end_x - 4} {end_y}"
                ),
            }
        )
    width = MARGIN * 2 + (max(level.values()) + 1) * (NODE_WIDTH + COLUMN_GAP) - COLUMN_GAP
    tallest = max(len(ids) for ids in columns.values())
    height = MARGIN * 2 + tallest * (NODE_HEIGHT + ROW_GAP) - ROW_GAP
    return {
        "width": width,
        "height": height,
        "node_width": NODE_WIDTH,
        "node_height": NODE_HEIGHT,
        "nodes": nodes,
        "edges": edges,
        "truncated": graph.truncated,
        "parents": sorted(e.parent for e in graph.edges if e.child == graph.task_id),
        "children": sorted(e.child for e in graph.edges if e.parent == graph.task_id),
    }


def as_json(graph: DependencyGraph) -> dict[str, Any]:
    """The graph for the JSON API (no layout: clients draw their own)."""
    return {
        "nodes": [
            {
                "id": n.id,
                "task_name": n.task_name,
                "function_name": n.function_name,
                "status": n.status,
            }
            for n in graph.nodes
        ],
        "edges": [
            {"parent": e.parent, "child": e.child, "job_name": e.job_name, "done": e.done}
            for e in graph.edges
        ],
        "truncated": graph.truncated,
    }

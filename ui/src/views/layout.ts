// A layered layout for the service map: callers left of callees (longest path from the
// services nobody calls, cycles broken where a walk meets its own trail), each layer ordered
// by the average position of its neighbours to cut crossings.

export interface LayoutNode {
  name: string;
  layer: number;
  order: number;
  x: number;
  y: number;
}

export interface Layout {
  nodes: Map<string, LayoutNode>;
  width: number;
  height: number;
  /** Where the nodes without any edge start (they are laid out in rows below the graph). */
  isolatedTop: number | null;
}

export const NODE_WIDTH = 168;
export const NODE_HEIGHT = 46;
const COLUMN = NODE_WIDTH + 210;
const ROW = NODE_HEIGHT + 40;
const PAD = 24;
const GAP = 16;

export function layoutGraph(names: string[], edges: [string, string][]): Layout {
  const out = new Map<string, string[]>();
  const into = new Map<string, string[]>();
  for (const name of names) {
    out.set(name, []);
    into.set(name, []);
  }
  for (const [from, to] of edges) {
    if (from === to || !out.has(from) || !out.has(to)) continue;
    out.get(from)!.push(to);
    into.get(to)!.push(from);
  }
  const connected = new Set(edges.filter(([from, to]) => from !== to).flat());
  const isolated = names.filter((name) => !connected.has(name)).sort();
  const sorted = names.filter((name) => connected.has(name)).sort();

  // Depth-first from every node in name order, sources first; an edge back to a node still
  // on the walk closes a cycle and is left out of the layering.
  const state = new Map<string, 0 | 1 | 2>();
  const forward: [string, string][] = [];
  const topological: string[] = [];
  const starts = [...sorted.filter((name) => into.get(name)!.length === 0), ...sorted];
  for (const root of starts) {
    if (state.get(root)) continue;
    const stack: [string, number][] = [[root, 0]];
    state.set(root, 1);
    while (stack.length > 0) {
      const top = stack[stack.length - 1];
      const next = out.get(top[0])!;
      if (top[1] < next.length) {
        const child = next[top[1]++];
        const seen = state.get(child) ?? 0;
        if (seen === 1) continue;
        forward.push([top[0], child]);
        if (seen === 0) {
          state.set(child, 1);
          stack.push([child, 0]);
        }
      } else {
        state.set(top[0], 2);
        topological.push(top[0]);
        stack.pop();
      }
    }
  }
  topological.reverse();
  const layer = new Map<string, number>(sorted.map((name) => [name, 0]));
  const forwardOut = new Map<string, string[]>(sorted.map((name) => [name, []]));
  for (const [from, to] of forward) forwardOut.get(from)!.push(to);
  for (const name of topological) {
    for (const child of forwardOut.get(name)!) {
      layer.set(child, Math.max(layer.get(child)!, layer.get(name)! + 1));
    }
  }

  const layers: string[][] = [];
  for (const name of sorted) {
    const at = layer.get(name)!;
    (layers[at] ??= []).push(name);
  }
  const position = new Map<string, number>();
  const place = () => layers.forEach((members) => members.forEach((name, index) => position.set(name, index)));
  place();
  const barycenter = (name: string, neighbours: Map<string, string[]>) => {
    const list = neighbours.get(name)!;
    if (list.length === 0) return position.get(name)!;
    return list.reduce((sum, other) => sum + position.get(other)!, 0) / list.length;
  };
  for (let sweep = 0; sweep < 4; sweep++) {
    const down = sweep % 2 === 0;
    const order = down ? layers.keys() : [...layers.keys()].reverse();
    for (const at of order) {
      const members = layers[at];
      if (!members) continue;
      const weights = new Map(members.map((name) => [name, barycenter(name, down ? into : out)]));
      members.sort((a, b) => weights.get(a)! - weights.get(b)! || a.localeCompare(b));
      members.forEach((name, index) => position.set(name, index));
    }
  }

  const tallest = layers.length ? Math.max(1, ...layers.map((members) => members?.length ?? 0)) : 0;
  const nodes = new Map<string, LayoutNode>();
  layers.forEach((members, at) => {
    const offset = ((tallest - members.length) * ROW) / 2;
    members.forEach((name, order) => {
      nodes.set(name, { name, layer: at, order, x: PAD + at * COLUMN, y: PAD + offset + order * ROW });
    });
  });
  let width = PAD * 2 + Math.max(0, layers.length - 1) * COLUMN + NODE_WIDTH;
  let height = tallest ? PAD * 2 + (tallest - 1) * ROW + NODE_HEIGHT + 30 : 0;
  let isolatedTop: number | null = null;
  if (isolated.length > 0) {
    // Services with no call in the range: in rows under the graph, as wide as it is.
    const perRow = Math.max(3, Math.floor((width - PAD) / (NODE_WIDTH + GAP)));
    isolatedTop = height + (tallest ? 8 : PAD);
    const top = isolatedTop + 26;
    isolated.forEach((name, index) => {
      const row = Math.floor(index / perRow);
      const column = index % perRow;
      nodes.set(name, { name, layer: -1, order: index, x: PAD + column * (NODE_WIDTH + GAP), y: top + row * (NODE_HEIGHT + GAP) });
    });
    const rows = Math.ceil(isolated.length / perRow);
    width = Math.max(width, PAD * 2 + Math.min(isolated.length, perRow) * (NODE_WIDTH + GAP) - GAP);
    height = top + rows * (NODE_HEIGHT + GAP) + PAD;
  }
  return { nodes, width, height, isolatedTop };
}

/** Read-only indexes over an ONNX graph: who produces and consumes each tensor, constness, order. */
import type { OnnxGraph, OnnxNode } from "../../formats/onnx/index.ts";

export interface GraphIndex {
  readonly graph: OnnxGraph;
  /** Tensor name -> index of the node producing it. */
  readonly producer: Map<string, number>;
  /** Tensor name -> indices of the nodes reading it. */
  readonly consumers: Map<string, number[]>;
  readonly initializers: Set<string>;
  readonly graphInputs: Set<string>;
  readonly graphOutputs: Set<string>;
  /** Tensors computable from initializers alone (weights, Constant outputs, folded expressions). */
  readonly constant: Set<string>;
  /** Node indices in a topological order. */
  readonly order: number[];
}

export function indexGraph(graph: OnnxGraph): GraphIndex {
  const producer = new Map<string, number>();
  const consumers = new Map<string, number[]>();
  graph.nodes.forEach((n, i) => {
    for (const o of n.outputs) if (o !== "") producer.set(o, i);
    for (const x of n.inputs) {
      if (x === "") continue;
      let list = consumers.get(x);
      if (!list) consumers.set(x, (list = []));
      list.push(i);
    }
  });
  const initializers = new Set(graph.initializers.map((t) => t.name ?? ""));
  const graphInputs = new Set(graph.inputs.map((v) => v.name ?? "").filter((n) => !initializers.has(n)));
  const graphOutputs = new Set(graph.outputs.map((v) => v.name ?? ""));
  const order = topoOrder(graph.nodes, producer);
  const constant = new Set<string>(initializers);
  for (const i of order) {
    const n = graph.nodes[i]!;
    const allConst = n.inputs.every((x) => x === "" || constant.has(x));
    if (allConst && !hasSubgraph(n)) for (const o of n.outputs) if (o !== "") constant.add(o);
  }
  return { graph, producer, consumers, initializers, graphInputs, graphOutputs, constant, order };
}

function hasSubgraph(n: OnnxNode): boolean {
  return n.attributes.some((a) => a.g !== undefined || a.graphs.length > 0);
}

function topoOrder(nodes: OnnxNode[], producer: Map<string, number>): number[] {
  const state = new Uint8Array(nodes.length); // 0 new, 1 visiting, 2 done
  const order: number[] = [];
  for (let start = 0; start < nodes.length; start++) {
    if (state[start]) continue;
    // Iterative DFS: deep graphs (hundreds of layers) would overflow the JS stack recursively.
    const stack: Array<[number, number]> = [[start, 0]];
    state[start] = 1;
    while (stack.length) {
      const top = stack[stack.length - 1]!;
      const [i, k] = top;
      const inputs = nodes[i]!.inputs;
      if (k < inputs.length) {
        top[1]++;
        const p = producer.get(inputs[k]!);
        if (p !== undefined && state[p] === 0) {
          state[p] = 1;
          stack.push([p, 0]);
        }
      } else {
        state[i] = 2;
        order.push(i);
        stack.pop();
      }
    }
  }
  return order;
}

/** True when `target` is computed (transitively) from `from`. Stops at constants. */
export function dependsOn(ix: GraphIndex, from: string, target: string): boolean {
  const seen = new Set<string>();
  const stack = [target];
  while (stack.length) {
    const t = stack.pop()!;
    if (t === from) return true;
    if (seen.has(t) || ix.constant.has(t)) continue;
    seen.add(t);
    const p = ix.producer.get(t);
    if (p === undefined) continue;
    for (const x of ix.graph.nodes[p]!.inputs) if (x !== "") stack.push(x);
  }
  return false;
}

/** A fresh tensor name that collides with nothing in the graph. */
export function freshNamer(graph: OnnxGraph): (base: string) => string {
  const used = new Set<string>();
  for (const n of graph.nodes) {
    for (const x of n.inputs) used.add(x);
    for (const x of n.outputs) used.add(x);
  }
  for (const t of graph.initializers) used.add(t.name ?? "");
  for (const v of graph.inputs) used.add(v.name ?? "");
  return (base) => {
    let name = base;
    for (let i = 1; used.has(name); i++) name = `${base}_${i}`;
    used.add(name);
    return name;
  };
}

import { describe, expect, test } from "bun:test";
import { IncrementalDetokenizer, StopStringMatcher } from "../../src/core/text-stream.ts";

// A byte-level vocabulary: token i is byte i, so multi-byte UTF-8 characters span tokens.
const bytes = (t: ArrayLike<number>) => new TextDecoder().decode(new Uint8Array(Array.from(t)));

describe("IncrementalDetokenizer", () => {
  test("emits a multi-byte character only once it is complete, and the deltas add up to the text", () => {
    const text = "héllo → wörld 🎉!";
    const ids = [...new TextEncoder().encode(text)];
    const d = new IncrementalDetokenizer(bytes, [...new TextEncoder().encode("say: ")]);
    const deltas = ids.map((t) => d.push(t));
    expect(deltas.join("") + d.flush()).toBe(text);
    expect(deltas.some((x) => x.includes("\uFFFD"))).toBe(false);
    expect(deltas.filter((x) => x === "").length).toBeGreaterThan(0); // held while incomplete
  });
});

describe("StopStringMatcher", () => {
  test("cuts at the stop string, even when it spans deltas, and shows nothing after it", () => {
    const m = new StopStringMatcher(["\nUser:"]);
    const out = ["Hello", " there\nUs", "er: more", " text"].map((d) => m.push(d));
    expect(out.join("") + m.flush()).toBe("Hello there");
    expect(m.stopped).toBe(true);
    expect(out[1]).toBe(" there"); // "\nUs" held back as a possible stop
  });
  test("releases held-back text that turns out not to be a stop", () => {
    const m = new StopStringMatcher(["END"]);
    expect(m.push("the EN")).toBe("the ");
    expect(m.push("D? no, ENT")).toBe("");
    expect(m.stopped).toBe(true);
    const n = new StopStringMatcher(["END"]);
    expect(n.push("BEN")).toBe("B");
    expect(n.push("T")).toBe("ENT");
    expect(n.flush()).toBe("");
  });
  test("the earliest of several stops wins", () => {
    const m = new StopStringMatcher(["b", "a"]);
    expect(m.push("xxabyy")).toBe("xx");
  });
});

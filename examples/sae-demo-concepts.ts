/**
 * The concepts the SAE demo (examples/sae-demo.ts) can look for, and the two text tests it counts
 * with. Kept apart from the model work so the counting rules are small, readable and tested
 * (test/examples/sae-demo.test.ts): a reader checking the demo's table should be able to see
 * exactly what "the concept appeared" means.
 *
 * Discovery contrasts minimal pairs: the same sentences with the concept's word (set A) and with
 * other words of the same kind (set B), so the latents that differ are about the word, not about
 * sentence shape.
 */

export interface Concept {
  readonly name: string;
  /** The word put into the templates for set A. */
  readonly word: string;
  /** Words put into the same templates for set B. */
  readonly others: readonly string[];
  readonly templates: readonly string[];
  /** Words that count as the concept appearing in a generation (whole words, any case). */
  readonly forms: readonly string[];
}

const NOUN_TEMPLATES = [
  "Lily saw the {X} in the park.",
  "Tom had the {X}. He loved the {X} very much.",
  "One day, the {X} came to the house.",
  "The {X} was very happy.",
  "Ben played with the {X} all day.",
  'Mom said, "Look at the {X}!"',
  "Once upon a time, there was a big {X}.",
  "Sue wanted to see the {X} again.",
  "The girl looked at the {X} and smiled.",
  "They found the {X} under the tree.",
];

const ADJECTIVE_TEMPLATES = [
  "Tom was very {X}.",
  "Lily felt {X} all day.",
  "The little girl was {X} because her toy was gone.",
  'Mom said, "Why are you so {X}?"',
  "Ben looked {X} and went home.",
  "Sue was {X} when she saw the dog.",
  "The boy was {X}, so he sat down.",
  "One day, Lily was very {X}.",
  "The bird was {X} in the tree.",
  "Tim felt {X} and did not want to play.",
];

const NOUNS = ["cat", "car", "box", "tree", "doll", "cake", "bird", "hat", "boat", "ball", "dog", "sun"];
const nounConcept = (word: string, forms: readonly string[]): Concept => ({
  name: word,
  word,
  others: NOUNS.filter((n) => n !== word),
  templates: NOUN_TEMPLATES,
  forms,
});

export const CONCEPTS: Readonly<Record<string, Concept>> = {
  ball: nounConcept("ball", ["ball", "balls"]),
  dog: nounConcept("dog", ["dog", "dogs", "puppy", "puppies"]),
  rain: nounConcept("rain", ["rain", "rains", "rained", "raining", "rainy"]),
  sad: {
    name: "sad",
    word: "sad",
    others: ["happy", "tired", "big", "excited", "hungry", "little", "kind", "busy", "silly"],
    templates: ADJECTIVE_TEMPLATES,
    forms: ["sad", "sadly", "sadness", "unhappy"],
  },
};

/** The two prompt sets for `contrastLatents`: templates with the concept's word, and with the others. */
export function contrastSets(c: Concept): { withConcept: string[]; without: string[] } {
  const fill = (w: string) => c.templates.map((t) => t.replaceAll("{X}", w));
  return { withConcept: fill(c.word), without: c.others.flatMap(fill) };
}

const WORD = /[A-Za-z]+/g;

/** How many whole words of `text` are one of the concept's forms (case-insensitive). */
export function countMentions(text: string, c: Concept): number {
  const forms = new Set(c.forms);
  let n = 0;
  for (const w of text.match(WORD) ?? []) if (forms.has(w.toLowerCase())) n++;
  return n;
}

/**
 * Whether the token at `before.length` in `before + token + after` lies inside a word that is one
 * of the concept's forms: "b[all]" and "[ b]all" do, "[ b]oat" does not. This is how the demo
 * labels a latent: by how many of its top-activating contexts sit on the concept word.
 */
export function tokenInConceptWord(before: string, token: string, after: string, c: Concept): boolean {
  const text = before + token + after;
  // The token's letters (a token may start with a space): the span to widen to a whole word.
  let start = before.length;
  let end = before.length + token.length;
  while (start < end && !/[A-Za-z]/.test(text[start]!)) start++;
  while (end > start && !/[A-Za-z]/.test(text[end - 1]!)) end--;
  if (start === end) return false;
  while (start > 0 && /[A-Za-z]/.test(text[start - 1]!)) start--;
  while (end < text.length && /[A-Za-z]/.test(text[end]!)) end++;
  return c.forms.includes(text.slice(start, end).toLowerCase());
}

/** Lower-case words of a text, for the known-word rate (see sae-demo-run.ts). */
export function words(text: string): string[] {
  return (text.match(WORD) ?? []).map((w) => w.toLowerCase());
}
